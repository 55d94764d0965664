"""Which labels are new, which shipments still need polling; yields raw pages.

A tracking poll that still fails after core's retries (``TransientError``: 429, 5xx, timeouts, cut bodies)
costs that one parcel, not the night: it is skipped, counted (``tracking_poll_failed``), logged with its
tracking number, and asked again on the next run. A carrier-side error (``SkipRecord``) is treated the same
way but counted as ``carrier_errors``. Asked again means: a shipment already in the warehouse stays open
(no new snapshot is written), and a parcel first seen in this run, which has no row yet and whose label the
next run's window may no longer reach, is kept in the ``tracking_retry`` cursor (committed with the run)
and polled again by the next run.

When most polls fail the API is down, and loading a sliver would hide that: the source fails with one line
(rule in :func:`polls_look_down`). An ``AuthError`` or any other ``TerminalError`` fails the source at once,
and so does a failed page of labels, since the labels drive the cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

from shipetl import ExtractContext, NotFoundError, Page, SkipRecord, TransientError

from .client import ShipEngineClient

CURSOR = "labels_created_at"
RETRY_CURSOR = "tracking_retry"  # label metas of new parcels whose poll failed: polled again next run
# Failed polls are judged once this many have finished (or all, when fewer are due).
JUDGE_AFTER_POLLS = 20


def polls_look_down(failed: int, finished: int, total: int) -> bool:
    """Whether the tracking API looks down: more than half of the finished polls failed after their retries,
    judged once ``JUDGE_AFTER_POLLS`` have finished (a run with fewer parcels is judged on all of them).

    A lone failure among thousands is a parcel to ask again; half of them failing is an outage, and a run
    that loaded the other half would look like a quiet night. Twenty is enough that bad luck alone does not
    trip it (with core's six attempts a poll fails for good about once in a million requests at 10% faults),
    and small enough that a dead API fails the source after a few seconds instead of after every parcel.
    """
    return finished >= min(JUDGE_AFTER_POLLS, total) and failed * 2 > finished


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
        retry = [m for m in ctx.cursor(RETRY_CURSOR) or [] if isinstance(m, dict) and m.get("tracking_number")]
        for meta in retry:
            to_poll.setdefault(meta["tracking_number"], meta)
        for row in ctx.open_shipments():
            to_poll.setdefault(row["tracking_number"], stored_meta(row))
        ctx.log.info("shipments_to_poll", count=len(to_poll), retried=len(retry))
        known = {row["tracking_number"] for row in ctx.open_shipments()}
        again: list[dict[str, Any]] = []
        yield from _poll(ctx, client, list(to_poll.values()), options.poll_concurrency, again)
        # Only parcels with no row need remembering: an open shipment is polled again anyway.
        ctx.set_cursor(RETRY_CURSOR, [m for m in again if m["tracking_number"] not in known])
    finally:
        client.close()


# What a poll that failed for now is counted and logged as; either way the parcel is asked again next run.
_TRANSIENT = ("tracking_poll_failed", "tracking_poll_failed")  # (counter, log event)
_CARRIER = ("carrier_errors", "tracking_carrier_error")


def _poll(ctx: ExtractContext, client: ShipEngineClient, metas: list[dict[str, Any]], concurrency: int,
          again: list[dict[str, Any]]) -> Iterator[Page]:
    """One tracking page per parcel, in ``metas`` order; parcels to ask again next run are added to ``again``."""

    def fetch(meta: dict[str, Any]) -> Page | tuple[tuple[str, str], Exception] | None:
        try:
            body = client.tracking(meta["label_carrier_code"], meta["tracking_number"])
        except NotFoundError:
            return None  # untrackable or unknown: counted below, not asked again
        except SkipRecord as exc:
            return _CARRIER, exc
        except TransientError as exc:
            return _TRANSIENT, exc
        return Page("tracking", body, meta)

    failed = finished = 0
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        futures: list[Future] = [pool.submit(fetch, meta) for meta in metas]
        for meta, future in zip(metas, futures):
            outcome = future.result()  # AuthError and other TerminalErrors fail the source here
            finished += 1
            if isinstance(outcome, Page):
                yield outcome
                continue
            if outcome is None:
                ctx.count("not_found")
                continue
            (counter, event), exc = outcome
            error = (str(exc).splitlines() or [type(exc).__name__])[0]
            ctx.count(counter)
            again.append(meta)
            ctx.log.warning(event, tracking_number=meta["tracking_number"], carrier_code=meta["label_carrier_code"],
                            error=error, action="skipped; polled again next run")
            if counter != _TRANSIENT[0]:
                continue  # the carrier's side: never fails the whole source (providers.md 3.3)
            failed += 1
            if polls_look_down(failed, finished, len(metas)):
                raise TransientError(
                    f"ShipEngine tracking looks down: {failed} of the first {finished} polls (of {len(metas)}) still "
                    f"failed after retries, so nothing is loaded this run; last: {error}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on failure, polls not yet started are never sent
