"""Analytics marts: DuckDB views over the canonical tables, kept as one ``.sql`` file per view.

The views answer the questions users ask every day (where is each parcel, how fast is each carrier on
each lane, what is stuck, which orders missed ship-by, where deliveries fail). They live in the warehouse
file, so any DuckDB client sees them, and are replaced at every commit, so they follow the code.

Two macros hold what the views must not hard-code: ``analytics_as_of()`` (the clock, ``current_timestamp``)
and ``analytics_stuck_after_days()`` (pipeline setting ``analytics.stuck_after_days``). A session can
shadow both with temporary macros (:func:`install` with ``temporary=True``), which is how ``shipetl sql``
and ``shipetl report`` apply the pipeline's settings on a read-only connection, and how tests pin "now".
A third, ``analytics_order_state(provider, status_raw)`` (``order_state.sql``), reads the order statuses that
change a ship-by obligation (cancelled, cancellation requested, unpaid), as each installed provider declares
them in ``Provider.order_states``; the views share it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING

from ..plugins import load_registry
from ..provider import ORDER_STATES
from ..sqltext import sql_literal

if TYPE_CHECKING:
    from ..config import AnalyticsConfig

# Dependency order: every later view reads shipment_timeline.
MARTS = ("shipment_timeline", "delivery_performance", "stuck_shipments", "order_fulfilment", "delivery_exceptions")
DEFAULT_STUCK_AFTER_DAYS = 5


def _sql_file(name: str, temporary: bool) -> str:
    text = resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return text.replace("{temp}", "TEMP " if temporary else "")


def view_sql(name: str, *, temporary: bool = False) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of mart ``name``, as kept in ``shipetl/marts/<name>.sql``."""
    if name not in MARTS:
        raise KeyError(f"no mart named {name!r}; marts: {', '.join(MARTS)}")
    return _sql_file(name, temporary)


@functools.cache
def installed_order_states() -> Mapping[str, Mapping[str, str]]:
    """Every installed provider's ``order_states``, by provider (read once per process; do not modify)."""
    return load_registry().order_states()


def order_state_sql(words: Mapping[str, Mapping[str, str]], *, temporary: bool = False) -> str:
    """The ``analytics_order_state(provider, status_raw)`` macro, kept in ``order_state.sql``, its CASE made of
    ``words`` ({provider: {raw order status: order state}}), matched without regard to case or spaces."""
    cases = []
    for provider, table in sorted(words.items()):
        for state in ORDER_STATES:
            codes = sorted({word.strip().upper() for word, given in table.items() if given == state})
            if codes:
                cases.append(f"WHEN provider = {sql_literal(provider)} AND upper(trim(status_raw)) IN "
                             f"({', '.join(map(sql_literal, codes))}) THEN {sql_literal(state)}")
    body = f"CASE {' '.join(cases)} END" if cases else "CAST(NULL AS VARCHAR)"
    return _sql_file("order_state", temporary).replace("{words}", body)


def _timestamp_literal(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {value!r}")
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def install(con, settings: AnalyticsConfig | None = None, *, as_of: datetime | None = None,
            temporary: bool = False, order_states: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create or replace the macros and every mart view on ``con``.

    ``temporary=True`` creates them in the session's temp schema, which shadows the stored ones and works
    on a read-only connection. ``as_of`` pins ``analytics_as_of()`` (aware datetime); default: now.
    ``order_states``: the words of ``analytics_order_state`` by provider; default: the installed providers'.
    """
    stuck_after_days = settings.stuck_after_days if settings else DEFAULT_STUCK_AFTER_DAYS
    clock = _timestamp_literal(as_of) if as_of else "current_timestamp"
    temp = "TEMP " if temporary else ""
    con.execute(f"CREATE OR REPLACE {temp}MACRO analytics_as_of() AS {clock}")
    con.execute(f"CREATE OR REPLACE {temp}MACRO analytics_stuck_after_days() AS {int(stuck_after_days)}")
    con.execute(order_state_sql(installed_order_states() if order_states is None else order_states, temporary=temporary))
    for name in MARTS:
        con.execute(view_sql(name, temporary=temporary))
