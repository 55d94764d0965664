"""Which creation dates to list, which orders and parcels to track; yields raw pages.

Fuuffy has no updated-since filter (providers.md 4.2): every run re-lists the orders created in the last
``order_lookback_days`` (Hong Kong dates, one day added to ``end_date`` since its inclusiveness is
unknown), then asks tracking for

* each listed order that is not final, and each final one with a parcel the warehouse has not seen
  (so a parcel first met already delivered still gets its whole history);
* each parcel the warehouse holds as not final (``ctx.open_shipments()``).

A parcel with a known tracking number is asked by number; an order with none yet, by order id.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from shipetl import ExtractContext, NotFoundError, Page, SkipRecord

from .client import DEFAULT_TIMEZONE, PROVIDER, ForbiddenRecord, FuuffyClient
from .statuses import ORDER_STATUS_CODES

CURSOR = "orders_created_at"
KNOWN_PARCELS_SQL = "SELECT DISTINCT tracking_number FROM shipments WHERE provider = ? AND account_id = ?"


@dataclass(frozen=True)
class PollTarget:
    """One tracking request: by tracking number when known, else by order id; ``meta`` goes on the page."""

    tracking_number: str | None
    order_id: str | None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"tn:{self.tracking_number}" if self.tracking_number else f"order:{self.order_id}"


def filter_dates(since: datetime, until: datetime, zone: str) -> tuple[date, date]:
    """``start_date`` and ``end_date`` for the order list: local dates of the window, end plus one day."""
    tz = ZoneInfo(zone)
    return since.astimezone(tz).date(), until.astimezone(tz).date() + timedelta(days=1)


def tracking_numbers(order: dict[str, Any]) -> list[str]:
    """The order's parcels' tracking numbers: ``tracking_numbers`` (list or comma text) or ``tracking_number``."""
    value = order.get("tracking_numbers") or order.get("tracking_number") or []
    if isinstance(value, str):
        value = value.split(",")
    return [n.strip() for n in value if isinstance(n, str) and n.strip()]


def order_meta(order: dict[str, Any]) -> dict[str, Any]:
    """What the tracking mapping needs to know of the order a parcel belongs to."""
    return {
        "order_id": str(order.get("order_id") or "") or None,
        "order_status": order.get("order_status") or order.get("status"),
        "shipping_provider": order.get("shipping_provider"),
        "service_type": order.get("service_type"),
    }


def stored_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The same meta rebuilt from a shipment already in the warehouse (so an unchanged parcel hashes the same)."""
    extras = orjson.loads(row["extras"]) if row.get("extras") else {}
    return {"order_id": row.get("order_id"), "order_status": extras.get("order_status_code"),
            "shipping_provider": extras.get("shipping_provider"), "service_type": row.get("service")}


def order_is_final(order: dict[str, Any]) -> bool:
    code = str(order.get("order_status") or order.get("status") or "").strip().upper()
    return ORDER_STATUS_CODES.get(code, ("unknown", False))[1]


def order_targets(order: dict[str, Any]) -> list[PollTarget]:
    meta = order_meta(order)
    numbers = tracking_numbers(order)
    if numbers:
        return [PollTarget(n, meta["order_id"], meta) for n in numbers]
    return [PollTarget(None, meta["order_id"], meta)]


def known_parcels(ctx: ExtractContext) -> set[str]:
    """Tracking numbers of this account already in the warehouse (none where the context has no warehouse)."""
    query = getattr(ctx, "query", None)
    if query is None:
        return set()
    return {number for (number,) in query(KNOWN_PARCELS_SQL, [PROVIDER, ctx.account_id]) if number}


def needs_tracking(order: dict[str, Any], known: set[str]) -> bool:
    """Not final yet, or final with a parcel never fetched."""
    return not order_is_final(order) or any(n not in known for n in tracking_numbers(order))


def pages(ctx: ExtractContext, options) -> Iterator[Page]:
    """Order list pages for the window, then one tracking reply per order or parcel that needs one."""
    client = FuuffyClient(ctx, max_retries=options.max_retries)
    try:
        since, until = ctx.window(CURSOR)
        if ctx.since is None:
            since = min(since, until - timedelta(days=options.order_lookback_days))
        start, end = filter_dates(since, until, ctx.timezone or DEFAULT_TIMEZONE)
        known = known_parcels(ctx)
        targets: dict[str, PollTarget] = {}
        listed = 0
        for n, (raw, data) in enumerate(client.order_pages(start, end, options.page_size), start=1):
            yield Page("orders", raw, {"page": n, "start_date": start.isoformat(), "end_date": end.isoformat()})
            for order in data.get("order_list") or []:
                listed += 1
                if order.get("order_id") and needs_tracking(order, known):
                    targets.update((t.key, t) for t in order_targets(order))
        ctx.set_cursor(CURSOR, until)
        for row in ctx.open_shipments():
            target = PollTarget(row["tracking_number"], row.get("order_id"), stored_meta(row))
            targets.setdefault(target.key, target)
        ctx.log.info("tracking_to_poll", count=len(targets), orders_listed=listed)
        yield from _poll(ctx, client, list(targets.values()), options.poll_concurrency)
    finally:
        client.close()


def _poll(ctx: ExtractContext, client: FuuffyClient, targets: list[PollTarget], concurrency: int) -> Iterator[Page]:
    def fetch(target: PollTarget) -> Page | None:
        try:
            if target.tracking_number:
                body = client.tracking_by_number(target.tracking_number)
            else:
                body = client.tracking_by_order(str(target.order_id))
        except ForbiddenRecord:
            ctx.count("forbidden")
            return None
        except NotFoundError:
            ctx.count("not_found")
            return None
        except SkipRecord:
            ctx.count("courier_failures")  # Fuuffy's courier side: asked again next run
            ctx.log.warning("tracking_skipped", order_id=target.order_id, tracking_number=target.tracking_number,
                            reason="500999")
            return None
        return Page("tracking", body, target.meta)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        yield from (page for page in pool.map(fetch, targets) if page is not None)
