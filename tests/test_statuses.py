"""Status tables: merging plugins' tables, clashes, overrides, and the status_of / final_of macros."""

from __future__ import annotations

import duckdb
import pytest

from shipetl import statuses
from shipetl.errors import PluginError
from shipetl.statuses import ALWAYS_FINAL, STATUSES, StatusEntry, StatusTables


def test_canonical_vocabulary() -> None:
    assert STATUSES == ("pending", "info_received", "in_transit", "out_for_delivery", "failed_attempt",
                        "available_for_pickup", "delivered", "exception", "returned", "expired", "unknown")
    assert ALWAYS_FINAL == {"delivered", "returned", "expired"}


def test_add_and_lookup() -> None:
    t = StatusTables()
    t.add("shipengine", "usps", {"DE": "delivered", "IT": "in_transit", " OD ": "out_for_delivery"})
    assert t.lookup("usps", "IT") == StatusEntry("in_transit", False, "shipengine")
    assert t.lookup("usps", "  DE ") == StatusEntry("delivered", True, "shipengine")
    assert t.lookup("usps", "OD").status == "out_for_delivery"  # the table's own key is trimmed too
    assert t.lookup("usps", "XX") is None
    assert t.lookup("fedex", "DE") is None
    assert t.lookup("usps", None) is None
    assert t.suppliers == {"usps": {"shipengine"}}


def test_always_final_statuses_are_final_whatever_the_table_says() -> None:
    t = StatusTables()
    t.add("p", "ns", {"a": "delivered", "b": ("returned", False), "c": "expired", "d": "exception",
                      "e": ("exception", True), "f": "in_transit"})
    final = {raw: t.lookup("ns", raw).is_final for raw in "abcdef"}
    assert final == {"a": True, "b": True, "c": True, "d": False, "e": True, "f": False}


def test_invalid_status_is_rejected_naming_plugin_and_code() -> None:
    t = StatusTables()
    with pytest.raises(PluginError) as info:
        t.add("acme", "usps", {"DE": "Delivered"})
    msg = str(info.value)
    assert "acme" in msg and "usps" in msg and "'DE'" in msg and "'Delivered'" in msg
    assert t.lookup("usps", "DE") is None


def test_clash_names_both_plugins() -> None:
    t = StatusTables()
    t.add("shipengine", "usps", {"DE": "delivered"})
    with pytest.raises(PluginError) as info:
        t.add("acme-carriers", "usps", {"DE": "exception"})
    msg = str(info.value)
    assert "shipengine" in msg and "acme-carriers" in msg and "'DE'" in msg and "override" in msg
    assert t.lookup("usps", "DE") == StatusEntry("delivered", True, "shipengine")


def test_clash_on_finality_alone_is_a_clash() -> None:
    t = StatusTables()
    t.add("a", "ns", {"X": "exception"})
    with pytest.raises(PluginError):
        t.add("b", "ns", {"X": ("exception", True)})


def test_same_mapping_twice_is_no_clash() -> None:
    t = StatusTables()
    t.add("a", "ns", {"DE": "delivered"})
    t.add("b", "ns", {" DE": "delivered"})
    assert t.lookup("ns", "DE").status == "delivered"
    assert t.suppliers["ns"] == {"a", "b"}


def test_same_code_in_another_namespace_is_no_clash() -> None:
    t = StatusTables()
    t.add("a", "usps", {"DE": "delivered"})
    t.add("b", "fedex", {"DE": "exception"})
    assert t.lookup("usps", "DE").status == "delivered"
    assert t.lookup("fedex", "DE").status == "exception"


def test_override_refines() -> None:
    t = StatusTables()
    t.add("shipengine", "usps", {"DE": "delivered", "EX": "exception"})
    t.add("acme", "usps", {"EX": "returned"}, override=True)
    assert t.lookup("usps", "EX") == StatusEntry("returned", True, "acme")
    assert t.lookup("usps", "DE").plugin == "shipengine"


def test_rows_are_sorted() -> None:
    t = StatusTables()
    t.add("p", "b", {"2": "pending"})
    t.add("p", "a", {"9": "delivered", "1": "in_transit"})
    assert t.rows() == [("a", "1", "in_transit", False), ("a", "9", "delivered", True), ("b", "2", "pending", False)]


# --------------------------------------------------------------------------------- the macros


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    t = StatusTables()
    t.add("shipengine", "usps", {"DE": "delivered", "IT": "in_transit", "EX": ("exception", True)})
    t.add("shipengine", "fedex", {"DE": "exception", "O'Q": "pending"})
    c = duckdb.connect()
    statuses.install(c, t)
    return c


def test_status_of_known_and_unknown(con) -> None:
    assert con.execute("SELECT status_of('usps', 'DE'), status_of('usps', 'IT'), status_of('usps', 'ZZ'), "
                       "status_of('dhl', 'DE'), status_of('usps', NULL)").fetchone() == (
        "delivered", "in_transit", None, None, None)


def test_final_of(con) -> None:
    assert con.execute("SELECT final_of('usps', 'DE'), final_of('usps', 'IT'), final_of('usps', 'EX'), "
                       "final_of('usps', 'ZZ'), final_of('ups', 'DE')").fetchone() == (True, False, True, None, None)


def test_macros_trim_and_quote(con) -> None:
    assert con.execute("SELECT status_of('usps', '  DE  '), status_of('fedex', 'O''Q'), status_of('usps', 'de')"
                       ).fetchone() == ("delivered", "pending", None)


def test_macros_trim_like_lookup(con) -> None:
    assert con.execute("SELECT status_of('usps', chr(9) || 'DE' || chr(10)), status_of('usps', 'DE' || chr(13)), "
                       "status_of('usps', chr(11) || 'IT'), status_of('usps', ''), status_of('usps', 'D' || chr(9) || 'E')"
                       ).fetchone() == ("delivered", "delivered", "in_transit", None, None)


def test_namespace_per_row(con) -> None:
    rows = con.execute(
        "SELECT status_of(ns, code), final_of(ns, code) FROM (VALUES (1, 'usps', 'DE'), (2, 'fedex', 'DE'), "
        "(3, 'fedex', 'IT'), (4, NULL, 'DE'), (5, 'usps', 'IT')) AS t(n, ns, code) ORDER BY n"
    ).fetchall()
    assert rows == [("delivered", True), ("exception", False), (None, None), (None, None), ("in_transit", False)]


def test_numeric_codes_are_looked_up_as_text() -> None:
    t = StatusTables()
    t.add("shopee", "shopee", {"3": "in_transit"})
    c = duckdb.connect()
    statuses.install(c, t)
    assert c.execute("SELECT status_of('shopee', 3), status_of('shopee', '3')").fetchone() == ("in_transit", "in_transit")


def test_empty_tables_install_null_macros() -> None:
    c = duckdb.connect()
    statuses.install(c, StatusTables())
    assert c.execute("SELECT status_of('usps', 'DE'), final_of('usps', 'DE')").fetchone() == (None, None)


def test_install_replaces_previous_macros(con) -> None:
    t = StatusTables()
    t.add("other", "usps", {"DE": "returned"})
    statuses.install(con, t)
    assert con.execute("SELECT status_of('usps', 'DE'), status_of('usps', 'IT')").fetchone() == ("returned", None)
