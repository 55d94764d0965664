"""Which labels are new, which shipments still need polling; yields raw pages.

A tracking poll that still fails after core's retries (``TransientError``: 429, 5xx, timeouts, cut bodies)
costs that one parcel, not the night (:mod:`shipetl.polling`): it is skipped, counted (``tracking_poll_failed``),
logged with its tracking number, and asked again on the next run. A carrier-side error (``SkipRecord``) is
treated the same way but counted as ``carrier_errors``. Asked again means: a shipment already in the warehouse
stays open (no new snapshot is written, and this run does not expire it), and a parcel first seen in this run,
which has no row yet and whose label the next run's window may no longer reach, is kept in the
``tracking_retry`` cursor (committed with the run) and polled again by the next run.

When most polls fail the API is down and the source fails with one line (:func:`shipetl.polling.looks_down`).
An ``AuthError`` or any other ``TerminalError`` fails the source at once, and so does a failed page of labels,
since the labels drive the cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from shipetl import ExtractContext, NotFoundError, Page, Polls, Skip, SkipRecord, TransientError

from .client import ShipEngineClient

CURSOR = "labels_created_at"
RETRY_CURSOR = "tracking_retry"  # label metas of new parcels whose poll failed: polled again next run


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
        # As the label listing says now: the fallback for a reply without a status_code (a stored shipment's
        # would be stale, so stored_meta has none).
        "label_tracking_status": label.get("tracking_status"),
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
    """Parcels an earlier run could not poll, then the labels created in the window page by page, each page's
    new parcels polled before the next page is asked for, then the shipments still open (all of them, or the
    source's ``max_open_polls`` taken in turn: ``ctx.due_for_polling``).

    Labels come oldest first, so once a page's parcels are polled every label older than its newest is done:
    the cursor moves there, with a checkpoint (a long backfill stopped by Ctrl-C or SIGTERM goes on from it).
    """
    client = ShipEngineClient(ctx, options.on_behalf_of)
    try:
        since, until = ctx.window(CURSOR)
        retry = [m for m in ctx.cursor(RETRY_CURSOR) or [] if isinstance(m, dict) and m.get("tracking_number")]
        open_rows = ctx.open_shipments()
        known = {row["tracking_number"] for row in open_rows}
        ctx.log.info("shipments_to_poll", open=len(open_rows), retried=len(retry))
        polls = Polls(ctx, "ShipEngine tracking", options.poll_concurrency)
        again: list[dict[str, Any]] = []
        polled: set[str] = set()

        def poll(metas: list[dict[str, Any]]) -> Iterator[Page]:
            fresh = {m["tracking_number"]: m for m in metas if m["tracking_number"] not in polled}
            polled.update(fresh)
            yield from _poll(ctx, client, polls, list(fresh.values()), again)

        def checkpoint(cursor: datetime | None) -> None:
            if cursor is not None:
                ctx.set_cursor(CURSOR, cursor)
            # Only parcels with no row need remembering: an open shipment is polled again anyway.
            ctx.set_cursor(RETRY_CURSOR, [m for m in again if m["tracking_number"] not in known])
            ctx.checkpoint()

        yield from poll(retry)
        checkpoint(None)
        for n, body in enumerate(client.labels(since, until, options.page_size), start=1):
            yield Page("labels", body, {"page": n})
            labels = [label for label in body.get("labels") or [] if label.get("tracking_number")]
            yield from poll([label_meta(label) for label in labels])
            checkpoint(_done_before(body.get("labels") or []))
        backlog = [stored_meta(row) for row in open_rows if row["tracking_number"] not in polled]
        yield from poll(ctx.due_for_polling(backlog, key=lambda meta: meta["tracking_number"]))
        polls.finish()
        checkpoint(until)
    finally:
        client.close()


def _done_before(labels: list[dict[str, Any]]) -> datetime | None:
    """A second before the newest ``created_at`` of a page's labels (None when none parses): every label created
    by then is on this page or an earlier one, while the next page may hold more created in the same second
    as this page's newest, whether or not ``created_at_start`` counts its own instant."""
    times = []
    for label in labels:
        try:
            times.append(datetime.fromisoformat(label["created_at"]))
        except (KeyError, TypeError, ValueError):
            continue
    newest = max((t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in times), default=None)
    return newest - timedelta(seconds=1) if newest else None


def _poll(ctx: ExtractContext, client: ShipEngineClient, polls: Polls, metas: list[dict[str, Any]],
          again: list[dict[str, Any]]) -> Iterator[Page]:
    """One tracking page per parcel, in ``metas`` order; parcels to ask again next run are added to ``again``."""

    def fetch(meta: dict[str, Any]) -> Page | Skip | None:
        record = {"tracking_number": meta["tracking_number"], "carrier_code": meta["label_carrier_code"]}
        unheard = (meta["tracking_number"],)  # the shipment_id the mappings give it
        try:
            body = client.tracking(meta["label_carrier_code"], meta["tracking_number"])
        except NotFoundError:
            return None  # untrackable or unknown: counted below, not asked again
        except SkipRecord as exc:  # the carrier's side (providers.md 3.3)
            return Skip("carrier_errors", exc, record, outage=False, shipment_ids=unheard)
        except TransientError as exc:
            return Skip("tracking_poll_failed", exc, record, shipment_ids=unheard)
        return Page("tracking", body, meta)

    for page in polls.run(metas, fetch, again):  # AuthError and other TerminalErrors fail the source here
        if page is None:
            ctx.count("not_found")
        else:
            yield page
