"""What to fetch for one shop and in what order; yields raw pages.

1. ``get_order_list`` by ``update_time`` over the window (stored cursor minus lookback, or ``--since``),
   cut into slices of at most 15 days, each walked with its cursor; order numbers deduplicated.
2. ``get_order_detail`` 50 at a time; a requested order missing from the reply is noted in the page's
   meta (the mapping turns it into a reject) and counted.
3. Every package of those orders, plus the shop's shipments not yet final from earlier runs: its
   tracking number (``get_tracking_number``, until one appears), then its scans (``get_tracking_info``).
   A return leg (``<package_number>:return``) is never polled itself: its scans come in its forward
   package's reply, so while the leg is open its forward package is polled, even when that is final
   (its row is read back from the warehouse); once the leg is final, polling stops.

The cursor is the end of the last complete window; it is committed with the rows, never before. After each
slice (its order list, details and packages all fetched) the cursors make a checkpoint: a run stopped
early (Ctrl-C, SIGTERM) loads what it fetched and the next run goes on from the last complete slice.

A request for one package (``get_tracking_number``, ``get_tracking_info``) or one batch of order details that
still fails after core's retries (``TransientError``) costs those records, not the night (:mod:`shipetl.polling`):
they are skipped, counted (``tracking_poll_failed`` per package, ``order_poll_failed`` per order) and logged. The
cursor still moves past them, so the next run asks again from two cursors committed with the rows:
``orders_retry`` (the order numbers, whose details and packages come first) and ``tracking_retry`` (the metas of
packages the warehouse has no row for; an open package is polled again anyway). When most requests fail the
source fails with one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson

from shipetl import ExtractContext, NotFoundError, Page, Polls, Skip, TransientError

from .client import DETAIL_BATCH_MAX, WINDOW_S, NotYetAvailable, ShopeeApi
from .mapping import RETURN_LEG

CURSOR = "orders_update_time"
ORDERS_RETRY_CURSOR = "orders_retry"  # order numbers whose get_order_detail failed: asked again next run
RETRY_CURSOR = "tracking_retry"  # metas of packages with no row whose tracking failed: polled again next run
# Orders change while we read; the newest seconds are left for the next run (its lookback covers them).
SETTLE_LAG = timedelta(seconds=30)
# What stored_meta reads of a shipment, and the final forward packages of this shop whose return leg is open.
STORED_COLUMNS = ("shipment_id", "order_id", "tracking_number", "service", "carrier_code", "destination_country",
                  "shipped_at", "extras")
FINAL_WITH_OPEN_RETURN_SQL = f"""
SELECT {', '.join(f'f.{c}' for c in STORED_COLUMNS)}
FROM shipments_latest f JOIN shipments_latest r
    ON r.provider = f.provider AND r.account_id = f.account_id AND r.shipment_id = f.shipment_id || '{RETURN_LEG}'
WHERE f.provider = 'shopee' AND f.account_id = ? AND f.is_final AND NOT r.is_final
"""


def windows(since: datetime, until: datetime, max_seconds: int = WINDOW_S) -> list[tuple[int, int]]:
    """[since, until] as consecutive (time_from, time_to) epoch-second slices of at most ``max_seconds``.

    Slices share their boundary second (whether Shopee's bounds are inclusive is unconfirmed); the
    order numbers are deduplicated afterwards.
    """
    start, end = int(since.timestamp()), int(until.timestamp())
    out = []
    while start < end:
        stop = min(start + max_seconds, end)
        out.append((start, stop))
        start = stop
    return out


def carrier_code(shipping_carrier: str | None) -> str | None:
    """A code for Shopee's carrier label ("SPX Express" -> ``spx_express``); the label itself stays in ``service``."""
    slug = re.sub(r"[^a-z0-9]+", "_", (shipping_carrier or "").lower()).strip("_")
    return slug or None


def package_meta(order: dict[str, Any], package: dict[str, Any]) -> dict[str, Any]:
    """What the shipment and event mappings need to know of a package, from its order's detail."""
    recipient = order.get("recipient_address") or {}
    packages = order.get("package_list") or []
    carrier = package.get("shipping_carrier") or order.get("shipping_carrier")
    return {
        "order_sn": order.get("order_sn"),
        "package_number": str(package.get("package_number")),
        "split": len(packages) > 1,
        "logistics_status": package.get("logistics_status"),
        "shipping_carrier": carrier,
        "carrier_code": carrier_code(carrier),
        "destination_country": recipient.get("region") or order.get("region"),
        "pickup_done_time": int(order.get("pickup_done_time") or 0),
        "tracking_number": None,
    }


def stored_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The same meta rebuilt from a shipment the warehouse already holds (it carries what polling needs)."""
    extras = orjson.loads(row["extras"]) if row.get("extras") else {}
    shipped = row.get("shipped_at")
    return {
        "order_sn": row.get("order_id"),
        "package_number": row["shipment_id"],
        "split": bool(extras.get("split")),
        "logistics_status": extras.get("package_logistics_status"),
        "shipping_carrier": row.get("service"),
        "carrier_code": row.get("carrier_code"),
        "destination_country": row.get("destination_country"),
        "pickup_done_time": int(shipped.timestamp()) if shipped else 0,
        "tracking_number": row.get("tracking_number"),
    }


def pages(ctx: ExtractContext, api: ShopeeApi, page_size: int, poll_concurrency: int) -> Iterator[Page]:
    """Every page of one shop for the window: first the orders an earlier run could not fetch, then per time slice
    its order lists, then per batch of 50 the order details and at once the tracking of their packages; last, the
    packages an earlier run could not poll, and open packages of earlier runs not seen again (all of them, or the
    source's ``max_open_polls`` taken in turn).

    Working slice by slice and batch by batch keeps memory bounded by one slice's order numbers, not by
    the whole window (a backfill of a year can hold millions of orders).
    """
    since, until = ctx.window(CURSOR)
    until = min(until, datetime.now(until.tzinfo) - SETTLE_LAG)
    open_packages = _open_packages(ctx)
    with_rows = set(open_packages)  # polled again next run whatever happens to them in this one
    for meta in ctx.cursor(RETRY_CURSOR) or []:
        if isinstance(meta, dict) and meta.get("package_number"):
            open_packages.setdefault(meta["package_number"], meta)
    retried = [str(sn) for sn in ctx.cursor(ORDERS_RETRY_CURSOR) or []]
    slices = windows(since, until)
    ctx.log.info("order_windows", count=len(slices), since=since.isoformat(), until=until.isoformat(),
                 open_packages=len(open_packages), retried_orders=len(retried))
    polls = Polls(ctx, "Shopee", poll_concurrency)
    again_orders: list[str] = []
    again_packages: list[dict[str, Any]] = []

    def fetch_orders(numbers: list[str]) -> Iterator[Page]:
        for i in range(0, len(numbers), DETAIL_BATCH_MAX):
            batch = numbers[i:i + DETAIL_BATCH_MAX]
            try:
                raw, body = api.order_detail(batch)
            except TransientError as exc:
                again_orders.extend(batch)
                polls.skip(Skip("order_poll_failed", exc, {"order_sn": batch}), records=len(batch))
                continue
            polls.succeeded()
            details = (body.get("response") or {}).get("order_list") or []
            missing = sorted(set(batch) - {str(o.get("order_sn")) for o in details})
            if missing:
                ctx.count("orders_missing_from_detail", len(missing))
                ctx.log.warning("orders_missing_from_detail", order_sn=missing, warning=body.get("warning"))
            yield Page("order_detail", raw, {"missing": missing})
            batch_packages = [_fresh(package_meta(order, package), open_packages)
                              for order in details for package in order.get("package_list") or []]
            yield from _poll(ctx, api, polls, batch_packages, again_packages)

    def checkpoint(cursor: datetime | None) -> None:
        """Cursors for all fetched so far: the orders and packages to ask again, with those not reached yet."""
        if cursor is not None:
            ctx.set_cursor(CURSOR, cursor)
        ctx.set_cursor(ORDERS_RETRY_CURSOR, list(again_orders))
        # Only packages with no row need remembering: an open package is polled again anyway.
        ctx.set_cursor(RETRY_CURSOR, [m for m in [*again_packages, *open_packages.values()]
                                      if m["package_number"] not in with_rows])
        ctx.checkpoint()

    yield from fetch_orders(retried)
    checkpoint(None)
    done = set(retried)
    previous: set[str] = set()  # an order updated on a slice boundary is listed by both slices
    for time_from, time_to in slices:
        order_sns: dict[str, None] = {}
        for n, (raw, body) in enumerate(api.order_list_pages(time_from, time_to, page_size), start=1):
            yield Page("order_list", raw, {"time_from": time_from, "time_to": time_to, "page": n})
            for item in (body.get("response") or {}).get("order_list") or []:
                if (sn := str(item["order_sn"])) not in previous and sn not in done:
                    order_sns[sn] = None
        yield from fetch_orders(list(order_sns))
        previous = set(order_sns)
        checkpoint(datetime.fromtimestamp(time_to, until.tzinfo))
    ctx.log.info("open_packages_to_poll", count=len(open_packages))
    # Packages left to retry have no row to be polled again from: they are always asked. Open ones take turns.
    retries = [meta for number, meta in open_packages.items() if number not in with_rows]
    stored = [meta for number, meta in open_packages.items() if number in with_rows]
    packages = [*retries, *ctx.due_for_polling(stored, key=lambda meta: meta["package_number"])]
    open_packages.clear()  # each is polled below, and asked again from again_packages if that fails
    yield from _poll(ctx, api, polls, packages, again_packages)
    polls.finish()
    checkpoint(until)


def _open_packages(ctx: ExtractContext) -> dict[str, dict[str, Any]]:
    """Packages of earlier runs to poll, by number: those not final, and the final ones whose return leg is not."""
    rows = ctx.open_shipments()
    metas = [stored_meta(row) for row in rows if not row["shipment_id"].endswith(RETURN_LEG)]
    if len(metas) < len(rows):
        metas += [stored_meta(dict(zip(STORED_COLUMNS, row))) for row in ctx.query(FINAL_WITH_OPEN_RETURN_SQL, [ctx.account_id])]
    return {meta["package_number"]: meta for meta in metas}


def reversed_carrier_code(reply: bytes) -> str | None:
    """The code of a ``get_tracking_info`` reply's return courier, made as the forward one is."""
    return carrier_code((orjson.loads(reply).get("response") or {}).get("reversed_courier_name"))


def _fresh(meta: dict[str, Any], open_packages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A package seen in this run, taking the tracking number an earlier run stored; it is no longer 'open'."""
    known = open_packages.pop(meta["package_number"], None)
    if known and not meta["tracking_number"]:
        meta["tracking_number"] = known["tracking_number"]
    return meta


def _poll(ctx: ExtractContext, api: ShopeeApi, polls: Polls, metas: list[dict[str, Any]],
          again: list[dict[str, Any]]) -> Iterator[Page]:
    """One tracking page per package, in ``metas`` order; packages to ask again next run are added to ``again``."""

    def fetch(meta: dict[str, Any]) -> Page | Skip | None:
        order_sn, package_number = meta["order_sn"], meta["package_number"]
        try:
            if not meta["tracking_number"]:
                reply = api.tracking_number(order_sn, package_number, meta["split"])
                meta = {**meta, "tracking_number": reply.get("tracking_number") or None}
            if not meta["tracking_number"]:
                ctx.count("tracking_number_pending")  # not assigned yet: the package is asked again next run
                return Page("tracking", None, meta)
            info = api.tracking_info(order_sn, package_number)
            return Page("tracking", info, {**meta, "reversed_carrier_code": reversed_carrier_code(info)})
        except NotYetAvailable:
            ctx.count("tracking_number_pending")
            return Page("tracking", None, meta)
        except NotFoundError as exc:
            ctx.count("not_found")
            ctx.log.warning("package_not_found", order_sn=order_sn, package_number=package_number, error=str(exc))
            return None
        except TransientError as exc:
            # The package and its return leg (a second shipment) learn their news from this one reply.
            return Skip("tracking_poll_failed", exc, {"order_sn": order_sn, "package_number": package_number},
                        shipment_ids=(package_number, package_number + RETURN_LEG))

    yield from (page for page in polls.run(metas, fetch, again) if page is not None)
