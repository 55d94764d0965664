"""Stable event_id and snapshot hashes for canonical rows, in SQL for the pipeline and in Python for reference.

An event_id is the MD5 (hex) of provider, tracking number, the UTC instant in epoch microseconds, the raw
code and the text, joined by the unit separator (U+001F) with NULL written as the empty string. It does
not depend on the run, the page or the position in a reply, so a rerun or a repeated scan adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SEP = "\x1f"


def event_id(provider: str, tracking_number: str | None, occurred_at: datetime, code: str | None, text: str | None) -> str:
    """The event_id of one scan; ``occurred_at`` must be timezone-aware."""
    micros = (occurred_at - EPOCH) // timedelta(microseconds=1)
    parts = [provider, tracking_number or "", str(micros), code or "", text or ""]
    return hashlib.md5(SEP.join(parts).encode("utf-8")).hexdigest()


def event_id_sql(provider: str, tracking_number: str, occurred_at: str, code: str, text: str) -> str:
    """SQL computing ``event_id`` from SQL expressions, equal to :func:`event_id` for the same values."""
    parts = [provider, tracking_number, f"CAST(epoch_us({occurred_at}) AS VARCHAR)", code, text]
    joined = ", ".join(f"coalesce(CAST({p} AS VARCHAR), '')" for p in parts)
    return f"md5(concat_ws(chr(31), {joined}))"


def record_hash_sql(columns: Sequence[str]) -> str:
    """SQL hashing a snapshot's content columns; NULL and '' hash differently."""
    joined = ", ".join(f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in columns)
    return f"md5(concat_ws(chr(31), {joined}))"
