"""The Example Post provider in one module: API facts, paging, mapping SQL, status table.

Deliberately unlike the scaffold's API: cursor paging (``next``), epoch-second times, a token header,
and a body kept as the response bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from shipetl import ExtractContext, Page, Provider, Stream, TableMapping

PARCELS_PATH = "/v2/parcels"
TOKEN_HEADER = "X-Example-Token"
STATUS_CODES = {"10": "info_received", "20": "in_transit", "30": "in_transit", "40": "delivered"}

_SCAN = "STRUCT(ts BIGINT, code VARCHAR, note VARCHAR)"
PARCELS_BODY = f"STRUCT(parcels STRUCT(id VARCHAR, status VARCHAR, created BIGINT, scans {_SCAN}[])[], next VARCHAR)"
SHIPMENTS_SQL = """
SELECT p.id AS shipment_id, p.id AS tracking_number, 'example' AS carrier_code,
       status_of('example', p.status) AS status, p.status AS status_raw, p.created AS created_at
FROM (SELECT unnest(body.parcels) AS p FROM pages)
"""
EVENTS_SQL = """
SELECT id AS shipment_id, id AS tracking_number, 'example' AS carrier_code, s.ts AS occurred_at,
       s.code AS status_raw, status_of('example', s.code) AS status, s.note AS description
FROM (SELECT p.id AS id, unnest(p.scans) AS s FROM (SELECT unnest(body.parcels) AS p FROM pages))
"""


class ExampleProvider(Provider):
    """Every parcel of the account, page by page, from ``GET /v2/parcels``."""

    name = "example"
    default_base_url = "https://api.example-post.invalid"
    secrets = ("token",)
    streams = (Stream("parcels", PARCELS_BODY, (
        TableMapping("shipments", SHIPMENTS_SQL, {"created_at": "epoch_s"}),
        TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "epoch_s"}),
    )),)

    def extract(self, ctx: ExtractContext) -> Iterator[Page]:
        with ctx.http(headers={TOKEN_HEADER: ctx.secret("token")}) as http:
            params: dict[str, str] = {}
            while True:
                body = http.request("GET", PARCELS_PATH, params=params).content
                yield Page("parcels", body, {})
                following = orjson.loads(body).get("next")
                if not following:
                    return
                params = {"after": following}
