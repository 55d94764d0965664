"""Which creation dates to list, which orders and parcels to track; yields raw pages.

Fuuffy has no updated-since filter (providers.md 4.2): every run re-lists the orders created in the last
``order_lookback_days`` (Hong Kong dates, one day added to ``end_date`` since its inclusiveness is
unknown), then asks tracking for

* each listed order that is not final, and each listed order not tracked before whatever its status
  (the cursor ``orders_tracked_through`` remembers the highest order id all of whose predecessors in
  the listing were fetched), so a parcel first seen delivered still gets its whole history;
* each parcel the warehouse holds as not final (``ctx.open_shipments()``).

A parcel with a known tracking number is asked by number; an order with none yet, by order id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shipetl import ExtractContext, NotFoundError, Page, TransientError

from .client import DEFAULT_TIMEZONE, CourierFailure, ForbiddenRecord, FuuffyClient
from .statuses import ORDER_STATUS_CODES

CURSOR = "orders_created_at"
TRACKED_CURSOR = "orders_tracked_through"


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


def order_id_key(order_id: str) -> tuple[int, str]:
    """Sort key of numeric-string order ids (``"999" < "1000"``)."""
    return (len(order_id), order_id)


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
    """The same meta rebuilt from a shipment already in the warehouse."""
    return {"order_id": row.get("order_id"), "order_status": None,
            "shipping_provider": row.get("carrier_code"), "service_type": row.get("service")}


def order_is_final(order: dict[str, Any]) -> bool:
    code = str(order.get("order_status") or order.get("status") or "").strip().upper()
    return ORDER_STATUS_CODES.get(code, ("unknown", False))[1]


def order_targets(order: dict[str, Any]) -> list[PollTarget]:
    meta = order_meta(order)
    numbers = tracking_numbers(order)
    if numbers:
        return [PollTarget(n, meta["order_id"], meta) for n in numbers]
    return [PollTarget(None, meta["order_id"], meta)]


def pages(ctx: ExtractContext, options) -> Iterator[Page]:
    """Order list pages for the window, then one tracking reply per order or parcel that needs one."""
    client = FuuffyClient(ctx, max_retries=options.max_retries)
    try:
        since, until = ctx.window(CURSOR)
        if ctx.since is None:
            since = min(since, until - timedelta(days=options.order_lookback_days))
        start, end = filter_dates(since, until, ctx.timezone or DEFAULT_TIMEZONE)
        tracked_through = ctx.cursor(TRACKED_CURSOR)
        targets: dict[str, PollTarget] = {}
        first_time: dict[str, str] = {}  # target key -> order id, for final orders never tracked before
        listed: list[str] = []
        for n, (raw, data) in enumerate(client.order_pages(start, end, options.page_size), start=1):
            yield Page("orders", raw, {"page": n, "start_date": start.isoformat(), "end_date": end.isoformat()})
            for order in data.get("order_list") or []:
                order_id = str(order.get("order_id") or "")
                if not order_id:
                    continue
                listed.append(order_id)
                new = tracked_through is None or order_id_key(order_id) > order_id_key(tracked_through)
                if new or not order_is_final(order):
                    for target in order_targets(order):
                        targets[target.key] = target
                        if new:
                            first_time[target.key] = order_id
        ctx.set_cursor(CURSOR, until)
        for row in ctx.open_shipments():
            target = PollTarget(row["tracking_number"], row.get("order_id"), stored_meta(row))
            targets.setdefault(target.key, target)
        ctx.log.info("tracking_to_poll", count=len(targets), orders_listed=len(listed))
        failed_orders: set[str] = set()
        for target, page in _poll(ctx, client, list(targets.values()), options.poll_concurrency):
            if page is None:
                if target.key in first_time:
                    failed_orders.add(first_time[target.key])
            else:
                yield page
        cursor = _tracked_through(tracked_through, listed, failed_orders)
        if cursor is not None:
            ctx.set_cursor(TRACKED_CURSOR, cursor)
    finally:
        client.close()


def _tracked_through(previous: str | None, listed: Iterable[str], failed: set[str]) -> str | None:
    """The highest listed order id below every order whose first tracking fetch failed."""
    ordered = sorted(set(listed), key=order_id_key)
    best = previous
    for order_id in ordered:
        if order_id in failed:
            break
        if best is None or order_id_key(order_id) > order_id_key(best):
            best = order_id
    return best


def _poll(ctx: ExtractContext, client: FuuffyClient, targets: list[PollTarget],
          concurrency: int) -> Iterator[tuple[PollTarget, Page | None]]:
    def fetch(target: PollTarget) -> tuple[PollTarget, Page | None]:
        try:
            if target.tracking_number:
                body = client.tracking_by_number(target.tracking_number)
            else:
                body = client.tracking_by_order(str(target.order_id))
        except ForbiddenRecord:
            ctx.count("forbidden")
            return target, None
        except NotFoundError:
            ctx.count("not_found")
            return target, None
        except TransientError as exc:
            if isinstance(exc, CourierFailure) or isinstance(exc.__cause__, CourierFailure):
                ctx.count("courier_failures")  # Fuuffy's courier side: asked again next run
                ctx.log.warning("tracking_skipped", order_id=target.order_id, tracking_number=target.tracking_number,
                                reason="500999")
                return target, None
            raise
        return target, Page("tracking", body, target.meta)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        yield from pool.map(fetch, targets)
