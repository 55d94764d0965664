"""ShipEngine endpoints and auth (``API-Key`` header), on shipetl's HTTP client."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson

from shipetl import (AuthError, ExtractContext, NotFoundError, RateLimit, SkipRecord, TerminalError, TransientError,
                     not_the_api, parse_retry_after)

LABELS_PATH = "/v1/labels"
TRACKING_PATH = "/v1/tracking"
# 400 codes that mean "this one parcel cannot be tracked", not "the request was malformed".
UNTRACKABLE = {"tracking_not_supported", "invalid_identifier", "carrier_not_connected"}
DEFAULT_RETRY_AFTER_S = 5.0  # a 429 without a wait of its own (providers.md 5)
# Test keys get 20 requests a minute where live ones get 200 (providers.md 3.3, 5).
TEST_KEY_PREFIX = "TEST_"
TEST_KEY_RATE_LIMIT = RateLimit(per_minute=20, burst=2)


def iso_z(value: datetime) -> str:
    """An instant as ShipEngine's filters take it: UTC with ``Z`` (a naive value is UTC)."""
    if value.tzinfo:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    return body.get("errors") or [] if isinstance(body, dict) else []


def classify(response: httpx.Response, log: Any = None) -> None:
    """Turn ShipEngine's ``{request_id, errors[]}`` bodies into typed errors (providers.md 3.3).

    A label listing without ``labels`` is not ShipEngine's (a wrong ``base_url``): it fails the source rather than
    end the listing empty. A 429 waits its ``Retry-After`` (core reads it, and ``RetryAfter``), else 5 s. A
    carrier-side error, whatever its status, costs that parcel until the next run (``SkipRecord``), never the
    source; other 5xx are left to core, which retries them. A success that lists errors is a partial success: its data is kept and, given a
    ``log``, the errors are logged.
    """
    status = response.status_code
    if status < 400:
        if response.request.url.path.endswith(LABELS_PATH) and b'"labels"' not in response.content:
            raise not_the_api(response, "ShipEngine", "a labels list")
        if log is not None and b'"errors"' in response.content and (errors := _errors(response)):
            log.warning("partial_success", url=str(response.request.url.copy_with(query=None)), status=status,
                        errors=[{k: e.get(k) for k in ("error_source", "error_code", "message")} for e in errors])
        return
    errors = _errors(response)
    first = errors[0] if errors else {}
    code, message = first.get("error_code", ""), first.get("message", "")
    if status == 429 or code == "rate_limit_exceeded":
        if status == 429 and parse_retry_after(response.headers) is not None:
            return  # core waits the seconds the reply gives
        raise TransientError("ShipEngine rate limit exceeded", retry_after=DEFAULT_RETRY_AFTER_S)
    if status == 401 or first.get("error_type") == "security":
        raise AuthError("API key rejected (HTTP 401); check credentials.api_key")
    if status == 404 and not errors:
        raise not_the_api(response, "ShipEngine")
    if status == 404 or code in UNTRACKABLE:
        raise NotFoundError(f"{code or 'not_found'}: {message}")
    if first.get("error_source") == "carrier":
        raise SkipRecord(f"carrier error HTTP {status} {code}: {message}")
    if status >= 500:
        return
    raise TerminalError(f"HTTP {status} {code}: {message}")


class ShipEngineClient:
    """The calls the extractor makes, one method each."""

    def __init__(self, ctx: ExtractContext, on_behalf_of: str | None = None):
        api_key = ctx.secret("api_key")
        headers = {"API-Key": api_key}
        if on_behalf_of:
            headers["On-Behalf-Of"] = on_behalf_of
        limit = TEST_KEY_RATE_LIMIT if api_key.startswith(TEST_KEY_PREFIX) else None
        self.http = ctx.http(headers=headers, classify=functools.partial(classify, log=ctx.log),
                             default_rate_limit=limit)

    def labels(self, since: datetime, until: datetime, page_size: int) -> Iterator[dict[str, Any]]:
        """Every page of labels created in [since, until], oldest first; stops at the last page."""
        page = 1
        while True:
            body = self.http.json("GET", LABELS_PATH, params={
                "created_at_start": iso_z(since), "created_at_end": iso_z(until), "page": page,
                "page_size": page_size, "sort_by": "created_at", "sort_dir": "asc",
            })
            yield body
            if page >= int(body.get("pages") or 0) or not body.get("labels"):
                return
            page += 1

    def tracking(self, carrier_code: str, tracking_number: str) -> bytes:
        """One tracking reply, as the bytes received (the raw zone keeps them as they are)."""
        params = {"carrier_code": carrier_code, "tracking_number": tracking_number}
        return self.http.request("GET", TRACKING_PATH, params=params).content

    def close(self) -> None:
        self.http.close()
