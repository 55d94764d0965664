"""Which AliExpress orders to fetch this run, and the raw pages of each (order snapshot, then its parcels).

AliExpress has no "list my dropshipping orders" API (providers.md 2.4): ids come from the source's options
(a list, a file, a warehouse query). Each run fetches every configured id except orders already
``FINISH`` with no parcel left open, plus the orders of any parcel still open in the warehouse, so an
order is polled until it and its parcels are final. An order whose tracking AliExpress does not know yet
(``ret: false`` / ``1001``) is counted as ``tracking_not_found`` and asked again next run.

An order whose detail or tracking call still fails after core's retries (``TransientError``) costs that order,
not the night (:mod:`shipetl.polling`): neither of its pages is loaded, it is counted (``order_poll_failed`` or
``tracking_poll_failed``, by the call that failed) and logged, its open parcels are not expired by this run,
and the next run asks for it again, since it is still configured and not stored as finished (loading its
snapshot alone could store it ``FINISH`` and so end its polling before its parcels were ever fetched). When
most orders fail the source fails with one line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from shipetl import ConfigError, ExtractContext, NotFoundError, Page, Polls, Skip, TransientError

from .client import PROVIDER, AliExpressClient
from .statuses import FINISHED_ORDER_STATUS

# Every order of the account the warehouse holds, and whether its latest snapshot is finished.
STORED_ORDERS_SQL = (
    "SELECT order_id, coalesce(status_raw = ?, false) FROM orders_latest WHERE provider = ? AND account_id = ?"
)


def ids_from_file(path: Path, column: str | None) -> list[str]:
    """Order ids from a file: one a line (blank lines and ``#`` comments skipped), or a CSV column."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"options.order_ids_file: cannot read {path}: {exc.strerror}") from None
    if column is None:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(text.splitlines())
    if column not in (reader.fieldnames or []):
        raise ConfigError(f"options.order_ids_column: {path} has no column {column!r} "
                          f"(columns: {', '.join(reader.fieldnames or []) or 'none'})")
    return [row[column].strip() for row in reader if (row.get(column) or "").strip()]


def configured_ids(ctx: ExtractContext, options) -> list[str]:
    """Every id the options name, in order, without repeats; ids that are not numbers are skipped and counted."""
    ids = list(options.order_ids)
    if options.order_ids_file:
        ids += ids_from_file(options.order_ids_file, options.order_ids_column)
    if options.order_ids_sql:
        ids += [str(row[0]).strip() for row in ctx.query(options.order_ids_sql) if row and row[0] is not None]
    valid = [i for i in ids if _is_order_id(i)]
    if len(valid) < len(ids):
        ctx.count("bad_order_ids", len(ids) - len(valid))
        ctx.log.warning("order_ids_skipped", reason="not an order number (ASCII digits, a 64-bit number)",
                        examples=[i for i in ids if not _is_order_id(i)][:3])
    return list(dict.fromkeys(valid))


def _is_order_id(text: str) -> bool:
    """An AliExpress order id: a positive number the API's 64-bit ``order_id`` can hold."""
    return text.isascii() and text.isdigit() and 0 < int(text) < 2**63


def ids_to_fetch(ctx: ExtractContext, options) -> list[str]:
    """Configured ids not yet finished, then the orders of parcels still open; those the warehouse already
    holds come last, all of them or the source's ``max_open_polls`` taken in turn (``ctx.due_for_polling``)."""
    open_orders = [str(s["order_id"]) for s in ctx.open_shipments() if s.get("order_id")]
    stored = dict((str(order_id), done) for order_id, done in
                  ctx.query(STORED_ORDERS_SQL, [FINISHED_ORDER_STATUS, PROVIDER, ctx.account_id]))
    finished = {order_id for order_id, done in stored.items() if done} - set(open_orders)
    configured = configured_ids(ctx, options)
    skipped = sum(1 for i in configured if i in finished)
    if skipped:
        ctx.count("orders_finished_skipped", skipped)
    wanted = list(dict.fromkeys([i for i in configured if i not in finished] + open_orders))
    return [i for i in wanted if i not in stored] + ctx.due_for_polling([i for i in wanted if i in stored], key=str)


def open_parcels(ctx: ExtractContext) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The shipment ids of the account's open parcels by order id, in one pass over them: all of them, and those
    still keyed by order and position (no number yet)."""
    parcels: dict[str, list[str]] = {}
    placeholders: dict[str, list[str]] = {}
    for s in ctx.open_shipments():
        if s.get("order_id"):
            parcels.setdefault(str(s["order_id"]), []).append(s["shipment_id"])
            if not s.get("tracking_number"):
                placeholders.setdefault(str(s["order_id"]), []).append(s["shipment_id"])
    return parcels, placeholders


def _fetch(ctx: ExtractContext, client: AliExpressClient, order_id: str, fallback: str | None,
           placeholders: list[str], parcels: list[str]) -> list[Page] | Skip:
    """The pages of one order, or a Skip naming its open ``parcels`` (their news is unknown this run)."""
    record = {"order_id": order_id}
    try:
        order = client.order(order_id)
    except NotFoundError as exc:
        ctx.count("order_not_found")
        ctx.log.warning("order_not_found", order_id=order_id, reason=str(exc))
        return []
    except TransientError as exc:
        return Skip("order_poll_failed", exc, record, shipment_ids=parcels)
    snapshot = Page("orders", order.content, {"order_id": order_id})
    try:
        tracking = client.tracking(order_id)
    except NotFoundError:
        ctx.count("tracking_not_found")  # no parcel data yet: asked again next run
        return [snapshot]
    except TransientError as exc:  # the order's snapshot waits with it (module doc)
        return Skip("tracking_poll_failed", exc, record, shipment_ids=parcels)
    meta = {"order_id": order_id, "logistics_status": order.result.get("logistics_status"),
            "unmatched_node_status": fallback, "placeholders": placeholders}
    # The snapshot last: a run stopped between the two loads the parcels alone, and the order, not stored
    # as finished, is fetched again.
    return [Page("tracking", tracking.content, meta), snapshot]


def pages(ctx: ExtractContext, options) -> Iterator[Page]:
    """The order snapshot and the tracking reply of every order to fetch, order by order."""
    client = AliExpressClient(ctx, app_key=options.app_key, language=options.language)
    try:
        # No cursors of its own: the warehouse itself says which orders are done, whenever a run stops. A run
        # stopped before its last order keeps the turn of open orders as committed, so none waits a round.
        ctx.checkpoint()
        ids = ids_to_fetch(ctx, options)
        ctx.log.info("orders_to_fetch", count=len(ids))
        if not ids:
            return
        client.session()  # authorize once before the threads start
        parcels, placeholders = open_parcels(ctx)
        fallback = options.unmatched_node_status
        polls = Polls(ctx, "AliExpress", options.poll_concurrency)
        # Skipped orders need no keeping: the next run's ids hold them again.
        for fetched in polls.run(ids, lambda i: _fetch(ctx, client, i, fallback, placeholders.get(i, []),
                                                       parcels.get(i, []))):
            yield from fetched
        polls.finish()
    finally:
        client.close()
