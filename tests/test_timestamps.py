"""The SQL time macros and their Python twin: provider examples, DST, rejects, and agreement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipetl import timestamps
from shipetl.timestamps import TimeParseError, reject_reason_sql, sql_expr, to_utc

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Phoenix",
    "Europe/London",
    "Asia/Hong_Kong",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Antarctica/Casey",
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    timestamps.install_macros(c)
    return c


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sql_one(con: duckdb.DuckDBPyConnection, kind: str, value: object, zone: str | None = None):
    """(converted, reject reason) for one value, passed as a bound parameter."""
    zone_sql = "NULL" if zone is None else "'" + zone + "'"
    row = con.execute(
        f"SELECT {sql_expr(kind, '$v', zone_sql)}, {reject_reason_sql(kind, 'col', '$v', zone_sql)}",
        {"v": value},
    ).fetchall()[0]
    return row[0], row[1]


def sql_batch(con, kind: str, values: list[str], zones: list[str | None]) -> list:
    """Convert a batch of text values (with per-row zones) in one query, in input order."""
    rows = con.execute(
        f"SELECT {sql_expr(kind, 'v', 'z')}, {reject_reason_sql(kind, 'col', 'v', 'z')} "
        "FROM (SELECT unnest(range(len($v))) AS i, unnest(CAST($v AS VARCHAR[])) AS v, "
        "unnest(CAST($z AS VARCHAR[])) AS z) ORDER BY i",
        {"v": values, "z": zones},
    ).fetchall()
    return rows


def test_utc_from_local_gives_null_for_a_blank_or_unknown_zone_instead_of_failing_the_query(con) -> None:
    rows = con.execute(
        "SELECT z, utc_from_local('2024-03-10 02:30:00', z) FROM (VALUES ('America/New_York'), (''), "
        "('Mars/Olympus_Mons'), (NULL)) AS t(z) ORDER BY z NULLS LAST").fetchall()
    assert rows == [("", None), ("America/New_York", utc(2024, 3, 10, 7, 30)), ("Mars/Olympus_Mons", None), (None, None)]


# ----------------------------------------------------------------------------- provider examples

EXAMPLES = [
    ("epoch_s", 1607930885, None, utc(2020, 12, 14, 7, 28, 5)),  # Shopee create_time
    ("epoch_s", "1607930885", None, utc(2020, 12, 14, 7, 28, 5)),
    ("epoch_ms", 1739928180000, None, utc(2025, 2, 19, 1, 23)),  # AliExpress time_stamp
    ("epoch_ms", "1739928180000", None, utc(2025, 2, 19, 1, 23)),
    ("epoch_ms", 1739928180000.0, None, utc(2025, 2, 19, 1, 23)),
    ("epoch_s", "1607930885.25", None, utc(2020, 12, 14, 7, 28, 5, 250000)),
    ("iso", "2021-09-20T19:03:00Z", None, utc(2021, 9, 20, 19, 3)),  # ShipEngine occurred_at
    ("iso", "2021-09-20T19:03:00.8Z", None, utc(2021, 9, 20, 19, 3, 0, 800000)),
    ("iso", "2021-09-20T19:03:00.000Z", None, utc(2021, 9, 20, 19, 3)),
    ("iso", "2021-09-20 19:03:00+08:00", None, utc(2021, 9, 20, 11, 3)),
    ("iso", "2021-09-20T19:03:00.1234567-05:30", None, utc(2021, 9, 21, 0, 33, 0, 123456)),
    ("local", "2025-12-09 17:37:09", "Asia/Hong_Kong", utc(2025, 12, 9, 9, 37, 9)),  # Fuuffy
    ("local", "2025-12-09 05:23:13", "Asia/Hong_Kong", utc(2025, 12, 8, 21, 23, 13)),
    ("local", "2025-12-09T05:23:13.5", "Asia/Hong_Kong", utc(2025, 12, 8, 21, 23, 13, 500000)),
    ("local", "2025-12-09T05:23:13Z", "Asia/Hong_Kong", utc(2025, 12, 9, 5, 23, 13)),  # offset wins
    ("local", "2025-12-09T05:23:13-04:00", "Asia/Hong_Kong", utc(2025, 12, 9, 9, 23, 13)),
    # DST: repeated hour -> first occurrence; skipped hour -> offset before the gap.
    ("local", "2024-11-03 01:30:00", "America/New_York", utc(2024, 11, 3, 5, 30)),
    ("local", "2024-03-10 02:30:00", "America/New_York", utc(2024, 3, 10, 7, 30)),
    ("local", "2024-10-27 01:30:00", "Europe/London", utc(2024, 10, 27, 0, 30)),
    ("local", "2024-03-31 01:30:00", "Europe/London", utc(2024, 3, 31, 1, 30)),
    ("local", "2024-04-07 01:45:00", "Australia/Lord_Howe", utc(2024, 4, 6, 14, 45)),
    ("local", "2024-10-06 02:15:00", "Australia/Lord_Howe", utc(2024, 10, 5, 15, 45)),
    # Three-hour changes, the largest in the tz database: a repeated wall time and a skipped one.
    ("local", "2020-03-08 00:30:00", "Antarctica/Casey", utc(2020, 3, 7, 13, 30)),
    ("local", "2009-10-18 02:30:00", "Antarctica/Casey", utc(2009, 10, 17, 18, 30)),
]


@pytest.mark.parametrize(("kind", "value", "zone", "expected"), EXAMPLES)
def test_examples(con, kind, value, zone, expected) -> None:
    assert to_utc(value, kind, zone) == expected
    assert sql_one(con, kind, value, zone) == (expected, None)


@pytest.mark.parametrize("kind", timestamps.TIME_KINDS)
@pytest.mark.parametrize("value", [None, "", "0", 0, 0.0, "  ", " 0 "])
def test_absent_is_null_never_1970(con, kind, value) -> None:
    assert to_utc(value, kind, "Asia/Hong_Kong") is None
    assert sql_one(con, kind, value, "Asia/Hong_Kong") == (None, None)
    assert con.execute("SELECT time_absent($v)", {"v": value}).fetchall() == [(True,)]


def test_result_column_is_utc_microseconds(con) -> None:
    table = con.sql(f"SELECT {sql_expr('epoch_ms', '1739928180000')} AS t").to_arrow_table()
    assert str(table.schema.field("t").type) == "timestamp[us, tz=UTC]"


def test_python_fold_zero_rule_is_what_zoneinfo_does() -> None:
    ny = ZoneInfo("America/New_York")
    assert datetime(2024, 11, 3, 1, 30, tzinfo=ny).astimezone(UTC) == utc(2024, 11, 3, 5, 30)
    assert datetime(2024, 3, 10, 2, 30, tzinfo=ny).astimezone(UTC) == utc(2024, 3, 10, 7, 30)


REJECTS = [
    ("iso", "2025-13-40 10:00", None, "col: '2025-13-40 10:00' is not a valid ISO 8601 time with offset"),
    ("iso", "2021-09-20 19:03:00", None, "col: '2021-09-20 19:03:00' is not a valid ISO 8601 time with offset"),
    ("iso", "2021-09-20T25:03:00Z", None, "col: '2021-09-20T25:03:00Z' is not a valid ISO 8601 time with offset"),
    ("iso", "yesterday", None, "col: 'yesterday' is not a valid ISO 8601 time with offset"),
    # Shapes DuckDB's own cast would read as another instant: hour 24, an offset out of range.
    ("iso", "2025-09-04T24:00:00Z", None, "col: '2025-09-04T24:00:00Z' is not a valid ISO 8601 time with offset"),
    ("iso", "2025-09-04T21:54:00+25:00", None, "col: '2025-09-04T21:54:00+25:00' is not a valid ISO 8601 time with offset"),
    ("iso", "2025-09-04T21:54:00+23:75", None, "col: '2025-09-04T21:54:00+23:75' is not a valid ISO 8601 time with offset"),
    ("local", "2025-09-04 24:00:00", "Asia/Hong_Kong", "col: '2025-09-04 24:00:00' is not a valid local time in Asia/Hong_Kong"),
    ("epoch_s", "abc", None, "col: 'abc' is not epoch seconds"),
    ("epoch_ms", "12:00", None, "col: '12:00' is not epoch milliseconds"),
    (
        "epoch_s",
        "1739928180000",
        None,
        "col: '1739928180000' is epoch seconds outside 1990..2100 (milliseconds given as seconds?)",
    ),
    (
        "epoch_ms",
        "1607930885",
        None,
        "col: '1607930885' is epoch milliseconds outside 1990..2100 (seconds given as milliseconds?)",
    ),
    ("epoch_s", "-5", None, "col: '-5' is epoch seconds outside 1990..2100 (milliseconds given as seconds?)"),
    ("local", "2025-02-30 10:00:00", "Asia/Hong_Kong", "col: '2025-02-30 10:00:00' is not a valid local time in Asia/Hong_Kong"),
    ("local", "abc", "Asia/Hong_Kong", "col: 'abc' is not a valid local time in Asia/Hong_Kong"),
    ("local", "2025-02-03 10:00:00", None, "col: '2025-02-03 10:00:00' is a local time but the source has no timezone"),
    ("iso", "x" * 100, None, "col: '" + "x" * 57 + "...' is not a valid ISO 8601 time with offset"),
]


@pytest.mark.parametrize(("kind", "value", "zone", "reason"), REJECTS)
def test_rejects_give_the_same_reason(con, kind, value, zone, reason) -> None:
    with pytest.raises(TimeParseError) as info:
        to_utc(value, kind, zone, column="col")
    assert str(info.value) == reason
    assert sql_one(con, kind, value, zone) == (None, reason)


def test_reason_without_column_and_error_type() -> None:
    with pytest.raises(ValueError, match=r"^'abc' is not epoch seconds$"):
        to_utc("abc", "epoch_s")


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown time kind"):
        sql_expr("rfc2822", "x")
    with pytest.raises(ValueError, match="unknown time kind"):
        to_utc("x", "rfc2822")


def test_install_twice_and_sql_literal_column_name(con) -> None:
    timestamps.install_macros(con)
    sql = reject_reason_sql("epoch_s", "it's", "'abc'")
    assert con.execute(f"SELECT {sql}").fetchall()[0][0] == "it's: 'abc' is not epoch seconds"


# ------------------------------------------------------------------------------------- properties

PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

naive_datetimes = st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2090, 12, 30))


@cache
def transition_days(zone: str) -> list[datetime]:
    """Local dates (2000..2030) on which the zone's UTC offset changes, to aim at gaps and overlaps."""
    tz = ZoneInfo(zone)
    days = []
    day = datetime(2000, 1, 1)
    prev = day.replace(tzinfo=tz).utcoffset()
    while day.year <= 2030:
        nxt = day + timedelta(days=1)
        off = nxt.replace(tzinfo=tz).utcoffset()
        if off != prev:
            days.append(day)
        prev, day = off, nxt
    return days or [datetime(2020, 1, 1)]


@st.composite
def local_case(draw) -> tuple[datetime, str]:
    zone = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        day = draw(st.sampled_from(transition_days(zone)))
        # Minutes on the transition day, as far as 05:00 the next morning (Lord Howe changes at 02:00).
        when = day + timedelta(minutes=draw(st.integers(0, 29 * 60)), microseconds=draw(st.integers(0, 999_999)))
    else:
        when = draw(naive_datetimes)
    return when, zone


def local_text(when: datetime, style: int) -> str:
    if style == 0:
        return when.strftime("%Y-%m-%d %H:%M:%S")
    if style == 1:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return when.isoformat(sep="T")


@PROPS
@given(st.lists(st.tuples(local_case(), st.integers(0, 2)), min_size=1, max_size=40))
def test_local_sql_agrees_with_python(con, cases) -> None:
    texts = [local_text(when, style) for (when, _), style in cases]
    zones = [zone for (_, zone), _ in cases]
    rows = sql_batch(con, "local", texts, zones)
    for text, zone, (got, reason) in zip(texts, zones, rows):
        expected = to_utc(text, "local", zone)
        assert (got, reason) == (expected, None), (text, zone)
        # The rule: fold=0, i.e. first occurrence / offset from before the gap.
        naive = datetime.fromisoformat(text)
        assert expected == naive.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)


@PROPS
@given(st.lists(st.tuples(naive_datetimes, st.integers(-14 * 4, 14 * 4), st.integers(0, 2)), min_size=1, max_size=40))
def test_iso_with_offset_is_the_instant(con, cases) -> None:
    texts, instants = [], []
    for when, quarters, style in cases:
        offset = timedelta(minutes=15 * quarters)
        aware = when.replace(tzinfo=UTC).astimezone(timezone(offset))
        text = aware.isoformat(sep=" " if style == 1 else "T")
        if style == 2 and offset == timedelta(0):
            text = text.replace("+00:00", "Z")
        texts.append(text)
        instants.append(when.replace(tzinfo=UTC))
    rows = sql_batch(con, "iso", texts, [None] * len(texts))
    for text, instant, row in zip(texts, instants, rows):
        assert to_utc(text, "iso") == instant, text
        assert row == (instant, None), text


@PROPS
@given(
    st.lists(
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)),
        min_size=1,
        max_size=40,
    ),
    st.booleans(),
)
def test_epoch_round_trip(con, whens, as_ms) -> None:
    kind = "epoch_ms" if as_ms else "epoch_s"
    expected, texts = [], []
    for when in whens:
        instant = when.replace(tzinfo=UTC)
        us = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        whole, frac = divmod(us, 1000 if as_ms else 1_000_000)
        texts.append(f"{whole}.{frac:0{3 if as_ms else 6}d}" if frac else str(whole))
        expected.append(instant)
    rows = sql_batch(con, kind, texts, [None] * len(texts))
    for text, instant, row in zip(texts, expected, rows):
        assert to_utc(text, kind) == instant, text
        assert row == (instant, None), text


@PROPS
@given(st.lists(st.text(max_size=30), min_size=1, max_size=40), st.sampled_from(timestamps.TIME_KINDS))
def test_arbitrary_text_agrees(con, texts, kind) -> None:
    zone = "Europe/London"
    rows = sql_batch(con, kind, texts, [zone] * len(texts))
    for text, (got, reason) in zip(texts, rows):
        try:
            expected, expected_reason = to_utc(text, kind, zone, column="col"), None
        except TimeParseError as exc:
            expected, expected_reason = None, str(exc)
        assert (got, reason) == (expected, expected_reason), repr(text)
