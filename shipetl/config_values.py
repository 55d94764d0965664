"""The value types a pipeline file's fields take (durations, start times, base URLs, memory sizes, time zones,
status maps, paths), each refusing a wrong value with a message that says what was expected."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from pydantic import PlainValidator

from .schema import TABLES
from .statuses import STATUSES

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "m": timedelta(minutes=1), "s": timedelta(seconds=1)}


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"6h"``, ``"2d"``, ``"1w"`` (or ``"0"``) as a timedelta; raises ValueError otherwise."""
    if isinstance(text, str) and text.strip() == "0":
        return timedelta(0)
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"expected a duration like '2d' or '6h', got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(value: timedelta) -> str:
    """The shortest ``parse_duration`` text for ``value`` (whole seconds)."""
    seconds = int(value.total_seconds())
    for unit, size in _UNITS.items():
        step = int(size.total_seconds())
        if seconds and seconds % step == 0:
            return f"{seconds // step}{unit}"
    return f"{seconds}s"


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return timedelta(0)  # `lookback: 0`, the documented default, needs no unit
    return parse_duration(value)


def _start(value: Any) -> date | datetime | None:
    parsed = value if value is None or isinstance(value, date) else None  # datetime is a date too
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            pass
    if parsed is None and value is not None:
        raise ValueError(f"expected a date like 2024-01-01 or a datetime like 2024-01-01T00:00:00Z, got {value!r}")
    day = parsed.date() if isinstance(parsed, datetime) else parsed
    if day is not None and day > datetime.now(timezone.utc).date():
        raise ValueError(f"{parsed.isoformat()} is in the future: a first run would fetch nothing until then")
    return parsed


def _base_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an http(s) URL like 'https://api.example.com', got {value!r}")
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = _USERINFO.sub("//***@", text)  # a user:password@ in it is a credential
        raise ValueError(f"expected an http(s) URL with a host, like 'https://api.example.com', got {shown!r}")
    return text


_USERINFO = re.compile(r"//[^/?#]*@")


Duration = Annotated[timedelta, PlainValidator(_duration)]
StartTime = Annotated[Union[date, datetime, None], PlainValidator(_start)]  # noqa: UP007
BaseUrl = Annotated[str | None, PlainValidator(_base_url)]

MEMORY_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


@cache
def time_zones() -> frozenset[str]:
    """Every IANA zone name this machine knows."""
    return frozenset(available_timezones())


# Tables whose rows carry a canonical status and the provider's raw code, and the canonical statuses.
StatusTable = Literal[tuple(name for name, t in TABLES.items() if {"status", "status_raw"} <= set(t.column_names))]
CanonicalStatus = Literal[STATUSES]


def from_folder(folder: Path, path: str | os.PathLike[str]) -> str:
    """``path`` as given in a pipeline file in ``folder``: ``~`` expanded, a relative path joined to ``folder``."""
    return os.path.normpath(Path(folder) / Path(path).expanduser())
