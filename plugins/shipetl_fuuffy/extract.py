"""Which creation dates to list, which orders and parcels to track; yields raw pages.

Fuuffy has no updated-since filter (providers.md 4.2): every run re-lists the orders created in the last
``order_lookback_days`` (Hong Kong dates, one day added to ``end_date`` since its inclusiveness is
unknown), then asks tracking for

* each listed order that is not final, and each final one with a parcel the warehouse has not seen, or
  listed delivered without numbers and with no parcel in the warehouse yet (so a parcel first met already
  delivered still gets its whole history; a cancelled order without numbers has none to get);
* each parcel the warehouse holds as not final (``ctx.open_shipments()``), listed again or not: all of them,
  or the source's ``max_open_polls`` taken in turn (``ctx.due_for_polling``).

A parcel with a known tracking number is asked by number; an order with none yet, by order id.

A tracking request that still fails after core's retries (``TransientError``) costs that parcel or order, not
the night (:mod:`shipetl.polling`): it is skipped, counted (``tracking_poll_failed``) and logged; a courier
failure (``500999``, ``SkipRecord``) likewise, counted as ``courier_failures``. Either is asked again next run:
a parcel the warehouse holds stays open, and any other target (a parcel or order first met in this run, which
the next run's list may no longer reach once it is older than the lookback) is kept in the ``tracking_retry``
cursor. When most requests fail the source fails with one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from shipetl import ExtractContext, NotFoundError, Page, Polls, Skip, SkipRecord, TransientError

from .client import DEFAULT_TIMEZONE, PROVIDER, ForbiddenRecord, FuuffyClient
from .statuses import ORDER_STATUS_CODES

CURSOR = "orders_created_at"
RETRY_CURSOR = "tracking_retry"  # targets with no warehouse row whose request failed: asked again next run
KNOWN_SQL = "SELECT DISTINCT tracking_number, order_id FROM shipments WHERE provider = ? AND account_id = ?"


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


def _order_status(order: dict[str, Any]) -> tuple[str, bool]:
    """The parcel status an order's status code implies, and whether it is final (unknown code: not final)."""
    code = str(order.get("order_status") or order.get("status") or "").strip().upper()
    return ORDER_STATUS_CODES.get(code, ("unknown", False))


def order_is_final(order: dict[str, Any]) -> bool:
    return _order_status(order)[1]


def order_implies(order: dict[str, Any]) -> str:
    """The parcel status the order's status code implies (``unknown`` for a code no table knows)."""
    return _order_status(order)[0]


def order_targets(order: dict[str, Any]) -> list[PollTarget]:
    meta = order_meta(order)
    numbers = tracking_numbers(order)
    if numbers:
        return [PollTarget(n, meta["order_id"], meta) for n in numbers]
    return [PollTarget(None, meta["order_id"], meta)]


@dataclass(frozen=True)
class Known:
    """What the warehouse holds of this account: its parcels' tracking numbers and the orders they belong to."""

    numbers: frozenset[str] = frozenset()
    orders: frozenset[str] = frozenset()


def known_shipments(ctx: ExtractContext) -> Known:
    """This account's shipments already in the warehouse (none where the context has no warehouse)."""
    query = getattr(ctx, "query", None)
    if query is None:
        return Known()
    rows = query(KNOWN_SQL, [PROVIDER, ctx.account_id])
    return Known(frozenset(n for n, _ in rows if n), frozenset(o for _, o in rows if o))


def needs_tracking(order: dict[str, Any], known: Known) -> bool:
    """Not final yet, or final with a parcel never fetched: a number the warehouse lacks, or, for an order listed
    delivered without numbers, no parcel of that order yet (a shipment first met delivered still gets its history)."""
    if not order_is_final(order):
        return True
    numbers = tracking_numbers(order)
    if numbers:
        return any(n not in known.numbers for n in numbers)
    return order_implies(order) == "delivered" and str(order["order_id"]) not in known.orders


def pages(ctx: ExtractContext, options) -> Iterator[Page]:
    """Order list pages for the window, then one tracking reply per order or parcel that needs one."""
    client = FuuffyClient(ctx, max_retries=options.max_retries)
    try:
        since, until = ctx.window(CURSOR)
        if ctx.since is None:
            since = min(since, until - timedelta(days=options.order_lookback_days))
        start, end = filter_dates(since, until, ctx.timezone or DEFAULT_TIMEZONE)
        known = known_shipments(ctx)
        # Every run lists its whole window again and skips the parcels already loaded as final, so a run
        # stopped anywhere goes on where it was without moving a cursor.
        ctx.checkpoint()
        targets: dict[str, PollTarget] = {}
        listed = 0
        for n, (raw, data) in enumerate(client.order_pages(start, end, options.page_size), start=1):
            yield Page("orders", raw, {"page": n, "start_date": start.isoformat(), "end_date": end.isoformat()})
            for order in data.get("order_list") or []:
                listed += 1
                if order.get("order_id") and needs_tracking(order, known):
                    targets.update((t.key, t) for t in order_targets(order))
        ctx.set_cursor(CURSOR, until)
        kept = [t for t in ctx.cursor(RETRY_CURSOR) or [] if isinstance(t, dict)]
        retry = [PollTarget(t.get("tracking_number"), t.get("order_id"), t.get("meta") or {})
                 for t in kept if t.get("tracking_number") or t.get("order_id")]
        stored = [PollTarget(row["tracking_number"], row.get("order_id"), stored_meta(row))
                  for row in ctx.open_shipments()]
        for target in retry:
            targets.setdefault(target.key, target)
        # Parcels the warehouse holds as open, listed again or not, take their turn; the rest are new or retried.
        open_keys = {t.key for t in stored}
        backlog = list({t.key: targets.get(t.key, t) for t in stored}.values())
        due = [*(t for key, t in targets.items() if key not in open_keys),
               *ctx.due_for_polling(backlog, key=lambda t: t.key)]
        ctx.log.info("tracking_to_poll", count=len(due), orders_listed=listed, retried=len(retry))
        polls = Polls(ctx, "Fuuffy tracking", options.poll_concurrency)
        again: list[PollTarget] = []
        yield from _poll(ctx, client, polls, due, again)
        polls.finish()
        # Only targets with no row need remembering: an open parcel is polled again anyway.
        ctx.set_cursor(RETRY_CURSOR, [asdict(t) for t in again if t.key not in open_keys])
    finally:
        client.close()


def _poll(ctx: ExtractContext, client: FuuffyClient, polls: Polls, targets: list[PollTarget],
          again: list[PollTarget]) -> Iterator[Page]:
    """One tracking page per target, in order; targets to ask again next run are added to ``again``."""

    def fetch(target: PollTarget) -> Page | Skip | None:
        record = {"order_id": target.order_id, "tracking_number": target.tracking_number}
        unheard = (target.tracking_number,) if target.tracking_number else ()  # its shipment_id; none yet without
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
        except SkipRecord as exc:  # Fuuffy's courier side, not its API
            return Skip("courier_failures", exc, record, outage=False, shipment_ids=unheard)
        except TransientError as exc:
            return Skip("tracking_poll_failed", exc, record, shipment_ids=unheard)
        return Page("tracking", body, target.meta)

    yield from (page for page in polls.run(targets, fetch, again) if page is not None)
