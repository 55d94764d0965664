"""Every accepted provider time format turned into a UTC instant, in DuckDB SQL and in Python.

Mapping runs in DuckDB SQL, so the conversion lives in SQL macros that :func:`install_macros` puts on a
connection; :func:`to_utc` is the scalar Python twin, the reference the tests hold the macros to, and what a
plugin's Python code can use for a time it needs outside a mapping. The two stay in one module, past 400 lines:
they are one rule, and must change together.

Kinds (:data:`TIME_KINDS`):

``iso``
    ISO 8601 with ``Z`` or a ``±HH:MM`` (also ``±HHMM``, ``±HH``) offset, ``T`` or space between date
    and time, seconds optional, a fraction of any length (truncated to microseconds). Text without an
    offset is rejected: it is not an instant.
``epoch_s`` / ``epoch_ms``
    A number (integer, decimal, or a float's text such as ``1.7e12``) of seconds / milliseconds since
    1970-01-01T00:00Z, as a number or as text. Values before 1990 or from 2100 on are rejected: they are
    almost always milliseconds given as seconds or the other way round.
``local``
    Wall-clock text ``YYYY-MM-DD HH:MM[:SS[.f]]`` (``T`` or space) read in the source's IANA zone. If
    the text carries an offset or ``Z`` anyway, that offset wins (providers mix both forms).

Absent values -- NULL, ``''``, ``0`` and ``'0'`` (also ``0.0``, surrounding whitespace ignored) -- become
NULL, never 1970. Anything else that does not parse is a reject with a reason, never a silent NULL.

DST rule for ``local`` (the same in SQL and Python):

* An ambiguous wall time (clocks set back, the time happens twice) is the FIRST occurrence, i.e. the
  earlier instant, read with the offset in force before the change (Python ``fold=0``):
  2024-11-03 01:30 America/New_York is 05:30Z (EDT), not 06:30Z.
* A nonexistent wall time (clocks spring forward, the time is skipped) is read with the offset in force
  before the gap, so it lands after the gap by the gap's length (also Python ``fold=0``):
  2024-03-10 02:30 America/New_York is read as EST, 07:30Z (03:30 EDT).

DuckDB's ``timezone(zone, ts)`` (ICU) already reads skipped times with the earlier offset but gives the
LATER instant for repeated ones; the macros step back by 2 h, 1 h or 30 min (Lord Howe shifts by 30 min)
when that earlier instant shows the same wall time.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .sqltext import sql_literal

if TYPE_CHECKING:
    import duckdb

TIME_KINDS = ("iso", "epoch_s", "epoch_ms", "local")

QUOTE_LIMIT = 60
EPOCH_MIN_S = 631_152_000  # 1990-01-01T00:00:00Z
EPOCH_MAX_S = 4_102_444_800  # 2100-01-01T00:00:00Z, exclusive

_WS = " \t\n\r"
# One pattern for Python and DuckDB (RE2): ASCII digits only, no look-arounds.
_DATETIME_RE = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r" ?(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?$"
)
_ABSENT_RE = r"^([+-]?0+(\.0*)?)?$"
# The shapes providers send almost always; DuckDB's own cast reads them exactly like the slow path.
# Hours, minutes and offsets in range only: DuckDB's cast reads 24:00 as the next midnight and an offset of
# +25:00 as 25 hours, where the exact route (and Python) reject them.
_HHMMSS = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
_FAST_ISO_RE = rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T{_HHMMSS}(\.[0-9]{{1,6}})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_FAST_NAIVE_RE = rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ]{_HHMMSS}"
_DECIMAL_RE = r"^([+-]?)([0-9]+)(?:\.([0-9]*))?$"
_FLOAT_EXP_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+$"

_PARTS = ("y", "mo", "d", "h", "mi", "sec", "frac", "z", "sign", "oh", "om")

# kind -> (per-unit microseconds, fraction digits kept, word used in reasons)
_EPOCH = {"epoch_s": (1_000_000, 6, "seconds"), "epoch_ms": (1_000, 3, "milliseconds")}
_HUGE = 10**30  # stands in for "far too large" in both SQL and Python
_EPOCH_HINT = {"epoch_s": "milliseconds given as seconds?", "epoch_ms": "seconds given as milliseconds?"}


class TimeParseError(ValueError):
    """A time value that is present but cannot be read; the message is the reject reason."""


# --------------------------------------------------------------------------------------------- SQL


def _macros() -> list[str]:
    ws = "' ' || chr(9) || chr(10) || chr(13)"
    names = "[" + ", ".join(sql_literal(p) for p in _PARTS) + "]"
    us_min, us_max = EPOCH_MIN_S * 1_000_000, EPOCH_MAX_S * 1_000_000
    m: list[str] = [
        f"time_text(x) AS trim(CAST(x AS VARCHAR), {ws})",
        f"time_absent(x) AS x IS NULL OR regexp_full_match(time_text(x), {sql_literal(_ABSENT_RE)})",
        # Quoted raw value for reject reasons, cut to QUOTE_LIMIT characters.
        f"""time_quote(x) AS '''' || CASE WHEN length(CAST(x AS VARCHAR)) > {QUOTE_LIMIT}
            THEN substring(CAST(x AS VARCHAR), 1, {QUOTE_LIMIT - 3}) || '...'
            ELSE CAST(x AS VARCHAR) END || ''''""",
        # ---- epochs: microseconds since 1970 (HUGEINT), NULL when not a number; no range check here.
        f"""time_epoch_us_parts(p, unit_us, digits) AS
            (CASE WHEN p.sign = '-' THEN -1 ELSE 1 END) *
            CASE WHEN length(ltrim(p.i, '0')) > 20 THEN CAST('{_HUGE}' AS HUGEINT)
                 ELSE TRY_CAST(p.i AS HUGEINT) * unit_us
                      + TRY_CAST(rpad(substring(p.f, 1, digits), digits, '0') AS HUGEINT) END""",
        f"""time_epoch_us_text(s, unit_us, digits) AS CASE
            WHEN regexp_full_match(s, {sql_literal(_DECIMAL_RE)}) THEN
              list_transform([regexp_extract(s, {sql_literal(_DECIMAL_RE)}, ['sign', 'i', 'f'])],
                             lambda time_p: time_epoch_us_parts(time_p, unit_us, digits))[1]
            WHEN regexp_full_match(s, {sql_literal(_FLOAT_EXP_RE)}) THEN
              list_transform([TRY_CAST(s AS DOUBLE)], lambda time_f:
                CASE WHEN isfinite(time_f) AND abs(time_f) < 1e20
                     THEN CAST(trunc(time_f * unit_us) AS HUGEINT)
                     ELSE CAST('{_HUGE}' AS HUGEINT) END)[1]
            END""",
        """time_epoch_us(x, unit_us, digits) AS
            list_transform([time_text(x)], lambda time_s: time_epoch_us_text(time_s, unit_us, digits))[1]""",
        f"time_epoch_in_range(us) AS us >= {us_min} AND us < {us_max}",
        """time_epoch_utc(us) AS list_transform([us], lambda time_us: CASE WHEN time_epoch_in_range(time_us)
            THEN timezone('UTC', make_timestamp(CAST(time_us AS BIGINT))) END)[1]""",
        f"""utc_from_epoch_s(x) AS CASE
            WHEN regexp_full_match(CAST(x AS VARCHAR), '[1-9][0-9]{{8,9}}')
             AND TRY_CAST(CAST(x AS VARCHAR) AS BIGINT) BETWEEN {EPOCH_MIN_S} AND {EPOCH_MAX_S - 1}
            THEN to_timestamp(TRY_CAST(CAST(x AS VARCHAR) AS BIGINT))
            WHEN NOT time_absent(x) THEN time_epoch_utc(time_epoch_us(x, 1000000, 6)) END""",
        f"""utc_from_epoch_ms(x) AS CASE
            WHEN regexp_full_match(CAST(x AS VARCHAR), '[1-9][0-9]{{11,12}}')
             AND TRY_CAST(CAST(x AS VARCHAR) AS BIGINT) BETWEEN {EPOCH_MIN_S * 1000} AND {EPOCH_MAX_S * 1000 - 1}
            THEN timezone('UTC', make_timestamp(TRY_CAST(CAST(x AS VARCHAR) AS BIGINT) * 1000))
            WHEN NOT time_absent(x) THEN time_epoch_utc(time_epoch_us(x, 1000, 3)) END""",
        # ---- date-time text
        f"time_parts(x) AS regexp_extract(time_text(x), {sql_literal(_DATETIME_RE)}, {names})",
        """time_naive(p) AS CASE
            WHEN p.y <> '' AND TRY_CAST(p.y AS INTEGER) >= 1 AND TRY_CAST(p.h AS INTEGER) <= 23
             AND TRY_CAST(p.mi AS INTEGER) <= 59 AND (p.sec = '' OR TRY_CAST(p.sec AS INTEGER) <= 59)
            THEN CAST(try_cast(p.y || '-' || p.mo || '-' || p.d AS DATE) AS TIMESTAMP)
                 + to_microseconds(
                     ((TRY_CAST(p.h AS BIGINT) * 60 + TRY_CAST(p.mi AS BIGINT)) * 60
                      + TRY_CAST(CASE WHEN p.sec = '' THEN '0' ELSE p.sec END AS BIGINT)) * 1000000
                     + TRY_CAST(rpad(substring(p.frac, 1, 6), 6, '0') AS BIGINT))
            END""",
        "time_has_offset(p) AS p.z <> '' OR p.sign <> ''",
        """time_offset_minutes(p) AS CASE
            WHEN p.z <> '' THEN 0
            WHEN p.sign <> '' AND TRY_CAST(p.oh AS INTEGER) <= 23
             AND (p.om = '' OR TRY_CAST(p.om AS INTEGER) <= 59)
            THEN (CASE WHEN p.sign = '-' THEN -1 ELSE 1 END)
                 * (TRY_CAST(p.oh AS INTEGER) * 60 + TRY_CAST(CASE WHEN p.om = '' THEN '0' ELSE p.om END AS INTEGER))
            END""",
        """time_offset_utc(p) AS CASE WHEN time_has_offset(p)
            THEN timezone('UTC', time_naive(p) - to_minutes(time_offset_minutes(p))) END""",
        # ICU gives the later instant for a repeated wall time; step back to the first occurrence. Only
        # rows with an offset change in the three hours before ``u`` (the largest fold in the tz database,
        # Antarctica/Casey's) reach the checks below.
        """time_first_instant(u, ts, zone) AS CASE
            WHEN timezone(zone, u - INTERVAL 3 HOUR) = ts - INTERVAL 3 HOUR THEN u
            WHEN timezone(zone, u - INTERVAL 3 HOUR) = ts THEN u - INTERVAL 3 HOUR
            WHEN timezone(zone, u - INTERVAL 2 HOUR) = ts THEN u - INTERVAL 2 HOUR
            WHEN timezone(zone, u - INTERVAL 1 HOUR) = ts THEN u - INTERVAL 1 HOUR
            WHEN timezone(zone, u - INTERVAL 30 MINUTE) = ts THEN u - INTERVAL 30 MINUTE
            ELSE u END""",
        # list_transform([v], lambda ...)[1] binds v once; without it the macro tree repeats the regex
        # and ICU calls dozens of times per row.
        """time_zone_utc(ts, zone) AS
            list_transform([timezone(zone, ts)], lambda time_u: time_first_instant(time_u, ts, zone))[1]""",
        """time_local_utc(p, zone) AS CASE WHEN time_has_offset(p) THEN time_offset_utc(p)
            ELSE list_transform([time_naive(p)], lambda time_ts: time_zone_utc(time_ts, zone))[1] END""",
        """time_iso_exact(x) AS CASE WHEN NOT time_absent(x)
            THEN list_transform([time_parts(x)], lambda time_p: time_offset_utc(time_p))[1] END""",
        """time_local_exact(x, zone) AS CASE WHEN NOT time_absent(x)
            THEN list_transform([time_parts(x)], lambda time_p: time_local_utc(time_p, zone))[1] END""",
        # Fast paths: the common shapes go through DuckDB's own parser (about 30x quicker than the
        # regex-and-arithmetic route above), everything else falls through to the exact macros.
        f"""utc_from_iso(x) AS CASE
            WHEN regexp_full_match(CAST(x AS VARCHAR), {sql_literal(_FAST_ISO_RE)}) THEN TRY_CAST(CAST(x AS VARCHAR) AS TIMESTAMPTZ)
            ELSE time_iso_exact(x) END""",
        f"""time_from_local(x, zone) AS CASE
            WHEN regexp_full_match(CAST(x AS VARCHAR), {sql_literal(_FAST_NAIVE_RE)})
            THEN time_zone_utc(TRY_CAST(CAST(x AS VARCHAR) AS TIMESTAMP), zone)
            ELSE time_local_exact(x, zone) END""",
        # For mappings: a zone that comes with each row may be blank or unknown, which would fail the
        # whole query in ICU; such a row gets NULL. (Core's own conversions use zones already checked.)
        """utc_from_local(x, zone) AS CASE
            WHEN zone IN (SELECT name FROM time_zone_names) THEN time_from_local(x, zone) END""",
        # ---- reject reasons (NULL when absent or fine)
        """time_reject_epoch(x, col, unit_us, digits, word, hint) AS CASE WHEN NOT time_absent(x) THEN
            list_transform([time_epoch_us(x, unit_us, digits)], lambda time_us: CASE
              WHEN time_us IS NULL THEN col || ': ' || time_quote(x) || ' is not epoch ' || word
              WHEN NOT time_epoch_in_range(time_us)
                THEN col || ': ' || time_quote(x) || ' is epoch ' || word || ' outside 1990..2100 (' || hint || ')'
              END)[1] END""",
        """time_reject_iso(x, col) AS CASE
            WHEN time_absent(x) OR utc_from_iso(x) IS NOT NULL THEN NULL
            ELSE col || ': ' || time_quote(x) || ' is not a valid ISO 8601 time with offset' END""",
        """time_reject_local(x, col, zone) AS CASE
            WHEN time_absent(x) OR time_from_local(x, zone) IS NOT NULL THEN NULL
            WHEN zone IS NULL AND time_naive(time_parts(x)) IS NOT NULL
              AND NOT time_has_offset(time_parts(x))
              THEN col || ': ' || time_quote(x) || ' is a local time but the source has no timezone'
            ELSE col || ': ' || time_quote(x) || ' is not a valid local time in ' || coalesce(zone, '(no timezone)')
            END""",
    ]
    return m


def install_macros(con: duckdb.DuckDBPyConnection, temp: bool = True) -> None:
    """Set the session to UTC and create the time macros and the zone table as TEMP objects on ``con``.

    TEMP so nothing is written into a warehouse file and read-only connections work; ``temp=False``
    creates them in the current database instead (an in-memory one whose cursors all need them).
    Safe to call twice.
    Public macros: ``time_absent(x)``, ``utc_from_epoch_s(x)``, ``utc_from_epoch_ms(x)``,
    ``utc_from_iso(x)``, ``utc_from_local(x, zone)`` (all but the first return TIMESTAMPTZ; the last is
    NULL for a blank or unknown zone); the ``time_*`` helpers are internal.
    ``time_zone_names(key, name)`` holds every IANA zone DuckDB knows, ``key`` lower-cased: a zone that
    arrives per row is looked up there first, as DuckDB fails a whole query on a zone it does not know.
    """
    con.execute("SET TimeZone='UTC'")
    con.execute(f"CREATE OR REPLACE {'TEMP ' if temp else ''}TABLE time_zone_names AS "
                "SELECT lower(name) AS key, name FROM pg_timezone_names()")
    for body in _macros():
        con.execute(f"CREATE OR REPLACE {'TEMP ' if temp else ''}MACRO {body}")


def _check_kind(kind: str) -> None:
    if kind not in TIME_KINDS:
        raise ValueError(f"unknown time kind {kind!r}; expected one of {', '.join(TIME_KINDS)}")


def sql_expr(kind: str, column_sql: str, zone_sql: str = "NULL") -> str:
    """SQL (TIMESTAMPTZ or NULL) converting ``column_sql`` of ``kind``; ``zone_sql`` is used by ``local``.

    ``column_sql`` and ``zone_sql`` are SQL expressions (a column, or a quoted literal such as
    ``'Asia/Hong_Kong'``), inserted as they are. Needs :func:`install_macros` on the connection.
    """
    _check_kind(kind)
    if kind == "local":
        return f"time_from_local({column_sql}, {zone_sql})"
    return f"utc_from_{kind}({column_sql})"


def reject_reason_sql(kind: str, column_name: str, column_sql: str, zone_sql: str = "NULL") -> str:
    """SQL giving the reject reason for ``column_sql``: NULL when the value is absent or parses.

    ``column_name`` is plain text (the field name put in front of the reason), not SQL.
    """
    _check_kind(kind)
    col = sql_literal(column_name)
    if kind == "iso":
        return f"time_reject_iso({column_sql}, {col})"
    if kind == "local":
        return f"time_reject_local({column_sql}, {col}, {zone_sql})"
    unit_us, digits, word = _EPOCH[kind]
    return (
        f"time_reject_epoch({column_sql}, {col}, {unit_us}, {digits}, "
        f"{sql_literal(word)}, {sql_literal(_EPOCH_HINT[kind])})"
    )


# ------------------------------------------------------------------------------------------ Python

_DATETIME = re.compile(_DATETIME_RE)
_ABSENT = re.compile(_ABSENT_RE)
_DECIMAL = re.compile(_DECIMAL_RE)
_FLOAT_EXP = re.compile(_FLOAT_EXP_RE)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _quote(raw: str) -> str:
    if len(raw) > QUOTE_LIMIT:
        raw = raw[: QUOTE_LIMIT - 3] + "..."
    return f"'{raw}'"


def is_absent(value: Any) -> bool:
    """True for the values that mean 'no time yet': None, '', 0, '0' (whitespace ignored)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    return _ABSENT.match(_text(value).strip(_WS)) is not None


def _epoch_us(text: str, unit_us: int, digits: int) -> int | None:
    m = _DECIMAL.match(text)
    if m:
        sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
        if len(whole.lstrip("0")) > 20:
            us = _HUGE
        else:
            us = int(whole) * unit_us + int(frac[:digits].ljust(digits, "0"))
        return -us if sign == "-" else us
    if _FLOAT_EXP.match(text):
        f = float(text)
        if math.isfinite(f) and abs(f) < 1e20:
            return math.trunc(f * unit_us)
        return _HUGE
    return None


def _naive(m: re.Match[str]) -> datetime | None:
    y, mo, d, h, mi, sec, frac = m.group(1, 2, 3, 4, 5, 6, 7)
    try:
        return datetime(
            int(y), int(mo), int(d), int(h), int(mi), int(sec or 0), int((frac or "")[:6].ljust(6, "0"))
        )
    except ValueError:
        return None


def _offset(m: re.Match[str]) -> timedelta | None:
    z, sign, oh, om = m.group(8, 9, 10, 11)
    if z:
        return timedelta(0)
    if sign and int(oh) <= 23 and int(om or 0) <= 59:
        minutes = int(oh) * 60 + int(om or 0)
        return timedelta(minutes=-minutes if sign == "-" else minutes)
    return None


def _has_offset(m: re.Match[str]) -> bool:
    return bool(m.group(8) or m.group(9))


def _with_offset(m: re.Match[str]) -> datetime | None:
    naive, offset = _naive(m), _offset(m)
    if naive is None or offset is None:
        return None
    try:
        return (naive - offset).replace(tzinfo=UTC)
    except OverflowError:
        return None


def _zone(zone: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _from_datetime(value: datetime, kind: str, zone: str | None, raw: str) -> datetime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC)
    if kind == "local" and zone and (tz := _zone(zone)):
        return value.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if kind == "local":
        raise TimeParseError(f"{raw} is a local time but the source has no timezone")
    raise TimeParseError(f"{raw} is not a valid ISO 8601 time with offset")


def to_utc(value: Any, kind: str, zone: str | None = None, *, column: str | None = None) -> datetime | None:
    """Convert one value of ``kind`` to an aware UTC datetime (microseconds); None when absent.

    ``zone`` is the IANA zone for ``local``. ``column``, when given, is put in front of the reason.
    Raises :class:`TimeParseError` with the same reason the SQL reject column gives.
    """
    _check_kind(kind)
    if is_absent(value):
        return None
    prefix = f"{column}: " if column else ""
    raw = _quote(_text(value))
    try:
        return _to_utc(value, kind, zone, raw)
    except TimeParseError as exc:
        raise TimeParseError(prefix + str(exc)) from None


def _to_utc(value: Any, kind: str, zone: str | None, raw: str) -> datetime:
    if kind in _EPOCH:
        unit_us, digits, word = _EPOCH[kind]
        us = None if isinstance(value, bool | datetime) else _epoch_us(_text(value).strip(_WS), unit_us, digits)
        if us is None:
            raise TimeParseError(f"{raw} is not epoch {word}")
        if not EPOCH_MIN_S * 1_000_000 <= us < EPOCH_MAX_S * 1_000_000:
            raise TimeParseError(f"{raw} is epoch {word} outside 1990..2100 ({_EPOCH_HINT[kind]})")
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)

    if isinstance(value, datetime):
        return _from_datetime(value, kind, zone, raw)
    m = _DATETIME.match(_text(value).strip(_WS))
    if kind == "iso":
        result = _with_offset(m) if m and _has_offset(m) else None
        if result is None:
            raise TimeParseError(f"{raw} is not a valid ISO 8601 time with offset")
        return result

    # local
    if m and _has_offset(m):
        result = _with_offset(m)
    elif m and zone is None and _naive(m) is not None:
        raise TimeParseError(f"{raw} is a local time but the source has no timezone")
    else:
        naive = _naive(m) if m else None
        tz = _zone(zone) if zone else None
        # fold=0: a repeated wall time is its first occurrence; a skipped one uses the offset before the gap.
        result = naive.replace(tzinfo=tz, fold=0).astimezone(UTC) if naive and tz else None
    if result is None:
        raise TimeParseError(f"{raw} is not a valid local time in {zone or '(no timezone)'}")
    return result
