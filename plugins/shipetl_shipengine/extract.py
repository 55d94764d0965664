"""Which labels are new, which shipments still need polling; yields raw pages."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from shipetl import ExtractContext, NotFoundError, Page, SkipRecord

from .client import ShipEngineClient

CURSOR = "labels_created_at"


def label_meta(label: dict[str, Any]) -> dict[str, Any]:
    """What the tracking mapping needs to know of a label, kept beside each tracking reply."""
    return {
        "label_id": label.get("label_id"),
        "label_carrier_code": label.get("carrier_code"),
        "service_code": label.get("service_code"),
        "created_at": label.get("created_at"),
        "ship_to_country": (label.get("ship_to") or {}).get("country_code"),
        "ship_from_country": (label.get("ship_from") or {}).get("country_code"),
        "tracking_number": label.get("tracking_number"),
    }


def stored_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The same meta rebuilt from a shipment already in the warehouse."""
    extras = orjson.loads(row["extras"]) if row.get("extras") else {}
    created = row.get("created_at")
    return {
        "label_id": extras.get("label_id"),
        "label_carrier_code": extras.get("label_carrier_code") or row.get("carrier_code"),
        "service_code": row.get("service"),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if created else None,
        "ship_to_country": row.get("destination_country"),
        "ship_from_country": row.get("origin_country"),
        "tracking_number": row["tracking_number"],
    }


def pages(ctx: ExtractContext, options) -> Iterator[Page]:
    """Labels created in the window, then one tracking reply per new or not-yet-final shipment."""
    client = ShipEngineClient(ctx, options.on_behalf_of)
    try:
        since, until = ctx.window(CURSOR)
        to_poll: dict[str, dict[str, Any]] = {}
        for n, body in enumerate(client.labels(since, until, options.page_size), start=1):
            yield Page("labels", body, {"page": n})
            for label in body.get("labels") or []:
                if label.get("tracking_number"):
                    to_poll[label["tracking_number"]] = label_meta(label)
        ctx.set_cursor(CURSOR, until)
        for row in ctx.open_shipments():
            to_poll.setdefault(row["tracking_number"], stored_meta(row))
        ctx.log.info("shipments_to_poll", count=len(to_poll))
        yield from _poll(ctx, client, list(to_poll.values()), options.poll_concurrency)
    finally:
        client.close()


def _poll(ctx: ExtractContext, client: ShipEngineClient, metas: list[dict[str, Any]], concurrency: int) -> Iterator[Page]:
    def fetch(meta: dict[str, Any]) -> Page | None:
        try:
            body = client.tracking(meta["label_carrier_code"], meta["tracking_number"])
        except NotFoundError:
            ctx.count("not_found")
            return None
        except SkipRecord:
            ctx.count("carrier_errors")  # the carrier's side: asked again next run
            return None
        return Page("tracking", body, meta)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for page in pool.map(fetch, metas):
            if page is not None:
                yield page
