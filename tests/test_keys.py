"""event_id in Python and in SQL agree; snapshot hashes tell NULL from ''."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipetl import keys


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    return c


def sql_event_id(con, provider, tracking_number, occurred_at, code, text) -> str:
    """event_id_sql evaluated in DuckDB over bound parameters, typed as the staged columns are."""
    expr = keys.event_id_sql("CAST($p AS VARCHAR)", "CAST($t AS VARCHAR)", "CAST($o AS TIMESTAMPTZ)",
                             "CAST($c AS VARCHAR)", "CAST($x AS VARCHAR)")
    return con.execute(f"SELECT {expr}", {"p": provider, "t": tracking_number, "o": occurred_at,
                                          "c": code, "x": text}).fetchone()[0]


CASES = [
    ("shipengine", "1Z999AA10123456784", datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "DE", "Delivered"),
    ("shipengine", "1Z999AA10123456784", datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC), "DE", "Delivered"),
    ("shopee", "SPXMY0123", datetime(2025, 12, 9, 17, 37, 9, 999999, tzinfo=timezone(timedelta(hours=8))), None, None),
    ("fuuffy", None, datetime(2024, 11, 3, 5, 30, tzinfo=UTC), "", ""),
    ("aliexpress", "LP00123", datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "签收", "已签收, 感谢使用顺丰 ✓"),
    ("aliexpress", "LP00123", datetime(2024, 1, 1, tzinfo=UTC), "X'Y", "it's \"quoted\"\nand multi-line"),
]


@pytest.mark.parametrize("values", CASES, ids=range(len(CASES)))
def test_python_and_sql_agree(con, values) -> None:
    assert keys.event_id(*values) == sql_event_id(con, *values)


def test_event_id_is_documented_md5() -> None:
    when = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    expected = hashlib.md5("se\x1f1Z\x1f1714564800250000\x1fDE\x1fDelivered".encode()).hexdigest()
    assert keys.event_id("se", "1Z", when, "DE", "Delivered") == expected


def test_event_id_depends_on_every_part() -> None:
    base = ("se", "1Z", datetime(2024, 5, 1, 12, tzinfo=UTC), "DE", "Delivered")
    variants = [
        ("ss", *base[1:]),
        (base[0], "1Y", *base[2:]),
        (*base[:2], base[2] + timedelta(microseconds=1), *base[3:]),
        (*base[:3], "DX", base[4]),
        (*base[:4], "Delivered."),
    ]
    ids = {keys.event_id(*v) for v in variants}
    assert len(ids) == len(variants)
    assert keys.event_id(*base) not in ids


def test_same_instant_in_any_zone_same_id() -> None:
    utc = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
    hk = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=8)))
    assert keys.event_id("se", "1Z", utc, "DE", "x") == keys.event_id("se", "1Z", hk, "DE", "x")


def test_pre_epoch_fractional_instant_agrees(con) -> None:
    when = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert keys.event_id("se", "1Z", when, "DE", "x") == sql_event_id(con, "se", "1Z", when, "DE", "x")


# Text DuckDB stores as VARCHAR: any code point but NUL and the surrogates.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
INSTANTS = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(provider=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=12),
       tracking=st.none() | TEXT, occurred=INSTANTS, code=st.none() | TEXT, text=st.none() | TEXT)
def test_python_and_sql_agree_on_random_values(con, provider, tracking, occurred, code, text) -> None:
    assert keys.event_id(provider, tracking, occurred, code, text) == sql_event_id(
        con, provider, tracking, occurred, code, text)


def test_record_hash_tells_null_from_empty(con) -> None:
    expr = keys.record_hash_sql(['"a"', '"b"'])
    rows = con.execute(
        f"SELECT {expr} FROM (VALUES (NULL, 'x', 1), ('', 'x', 2), (NULL, '', 3), ('', NULL, 4), ('', '', 5), "
        "(NULL, NULL, 6)) AS t(a, b, n) ORDER BY n"
    ).fetchall()
    hashes = [r[0] for r in rows]
    assert len(set(hashes)) == len(hashes), hashes


def test_record_hash_is_deterministic_and_content_based(con) -> None:
    expr = keys.record_hash_sql(['"a"', '"b"'])
    rows = con.execute(
        f"SELECT {expr} FROM (VALUES ('x', 1.5), ('x', 1.5), ('x', 1.25), ('1.5', NULL)) AS t(a, b)"
    ).fetchall()
    assert rows[0] == rows[1]
    assert rows[0] != rows[2]
    assert rows[3] not in (rows[0], rows[2])
