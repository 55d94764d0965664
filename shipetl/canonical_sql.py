"""The SQL that turns one provider mapping's rows into canonical rows, each bad one with its reason.

Two layers over the mapping's rows: the inner one types each column (UTC instants, trimmed text,
countries, statuses with the source's ``status_map``), the outer one derives event ids, finality and
snapshot hashes and names what makes a row unloadable. :mod:`shipetl.transform` runs it per raw file.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import pyarrow as pa

from . import keys, statuses, timestamps
from .errors import PluginError
from .provider import TableMapping
from .schema import COMMON, Table
from .sqltext import sql_literal

COMMON_NAMES = {f.name for f in COMMON}
COUNTRY_COLUMNS = {"destination_country", "origin_country", "country"}
SPECIAL = {"reject_reason", "time_zone"}  # mapped columns core reads but no table stores


def duckdb_type(t: pa.DataType) -> str:
    """DuckDB column type for a canonical Arrow type."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}[t]


# A mapping's per-row ``time_zone``: blank means the source's own, an unknown name means none (a reject).
_ROW_ZONE_TEXT = "nullif(trim(CAST(m.time_zone AS VARCHAR)), '')"
_ROW_ZONE = "CASE WHEN " + _ROW_ZONE_TEXT + " IS NULL THEN {source} ELSE \"tz\".name END"


def _trimmed(text: str) -> str:
    """SQL for ``text`` without surrounding spaces, NULL when empty; trims only the few values that need it."""
    return (f"CASE WHEN {text} = '' THEN NULL WHEN starts_with({text}, ' ') OR ends_with({text}, ' ') "
            f"THEN nullif(trim({text}), '') ELSE {text} END")


def _unknown_country(column: str) -> str:
    """SQL for a country column's text where no country table knows it (NULL when known or blank)."""
    return f'CASE WHEN "cn_{column}".alpha2 IS NULL THEN nullif(trim(CAST(m."{column}" AS VARCHAR)), \'\') END'


def _same_type(mapped: str, canonical: str) -> bool:
    """Whether a mapped column's DuckDB type already is the canonical one (no cast needed)."""
    norm = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    mapped = norm.get(mapped, mapped).replace(" ", "")
    return mapped == canonical.replace(" ", "")


class CanonicalSql:
    """Builds the typing SQL around one table mapping.

    Two layers over the mapping's rows ``m``: the inner one types each column (keeping the raw value of
    every column whose conversion can fail), the outer one derives event ids, finality and snapshot
    hashes and gives a reason to every row that cannot load. A reason is worked out only for a value
    that came out NULL, so valid rows pay for one conversion per column.
    """

    def __init__(self, table: Table, mapping: TableMapping, mapped_types: Mapping[str, str], provider: str, zone: str | None,
                 status_map: Mapping[str, str] | None = None):
        self.table, self.mapping, self.provider = table, mapping, provider
        self.types = dict(mapped_types)
        self.cols = set(mapped_types)
        self.by_hand = self._by_hand(status_map or {})
        self.zone_sql = sql_literal(zone) if zone else "NULL"
        self.row_zone = "time_zone" in self.cols
        unknown = self.cols - set(table.column_names) - SPECIAL
        if unknown:
            raise PluginError(f"mapping of {table.name} outputs unknown column(s) {', '.join(sorted(unknown))}; see `shipetl schema`")
        bad_kinds = {c: k for c, k in mapping.times.items() if k not in timestamps.TIME_KINDS}
        if bad_kinds:
            raise PluginError(f"mapping of {table.name}: unknown time kind(s) {bad_kinds}; use one of {timestamps.TIME_KINDS}")
        if "local" in mapping.times.values() and not zone and not self.row_zone:
            raise PluginError(f"mapping of {table.name} reads naive local times but neither the source has a timezone "
                              "nor the mapping a time_zone column")
        self.times = {**self._unlisted_times(), **mapping.times}

    def _unlisted_times(self) -> dict[str, str]:
        """Time columns the mapping gives as text without listing them in ``times``: ISO 8601 with an offset, as
        the ``iso`` kind reads them (text without one is rejected, never taken as UTC).

        :raises PluginError: any other type (a naive TIMESTAMP, a number), which only a listed kind reads right.
        """
        unlisted = {f.name: self.types[f.name] for f in self.table.columns if pa.types.is_timestamp(f.type)
                    and f.name in self.cols and f.name not in self.mapping.times and f.name not in COMMON_NAMES
                    and self.types[f.name].strip('"') != "NULL"}  # `NULL AS delivered_at`: nothing to read
        wrong = sorted(name for name, mapped in unlisted.items()
                       if not _same_type(mapped, "TIMESTAMPTZ") and mapped != "VARCHAR")
        if wrong:
            raise PluginError(f"mapping of {self.table.name} gives {', '.join(f'{c} as {unlisted[c]}' for c in wrong)}: "
                              "give a time as text and list it in TableMapping.times (iso, epoch_s, epoch_ms or local), "
                              "or as TIMESTAMPTZ")
        return {name: "iso" for name, mapped in unlisted.items() if mapped == "VARCHAR"}

    def _typed(self, f: pa.Field) -> tuple[str, str | None]:
        """(SQL for the typed value, SQL for its reject reason over the raw value ``__raw_<name>``, or None).

        The reason is only evaluated where the typed value is NULL.
        """
        name, src, raw = f.name, f'm."{f.name}"', f'"__raw_{f.name}"'
        dtype = duckdb_type(f.type)
        if name not in self.cols:
            return f"CAST(NULL AS {dtype})", None  # typed, so staged rows and Parquet keep the canonical types
        mapped = self.types[name]
        if name in self.times:
            kind = self.times[name]
            if not self.row_zone:
                return (timestamps.sql_expr(kind, src, self.zone_sql),
                        timestamps.reject_reason_sql(kind, name, raw, self.zone_sql))
            # A row whose own zone is unknown gets that reason (below), not one per time column.
            return (timestamps.sql_expr(kind, src, _ROW_ZONE.format(source=self.zone_sql)),
                    f"CASE WHEN NOT __zone_unknown THEN {timestamps.reject_reason_sql(kind, name, raw, '__zone')} END")
        if name == "extras":
            if mapped == "JSON":
                return f"CAST({src} AS VARCHAR)", None
            return (f"CAST(TRY_CAST({src} AS JSON) AS VARCHAR)",
                    f"CASE WHEN {raw} IS NOT NULL THEN 'extras: not valid JSON' END")
        if name in COUNTRY_COLUMNS:
            return f'"cn_{name}".alpha2', None
        if dtype == "VARCHAR":
            return _trimmed(src if mapped == "VARCHAR" else f"CAST({src} AS VARCHAR)"), None
        if _same_type(mapped, dtype):
            return src, None
        text = f"nullif(trim(CAST({raw} AS VARCHAR)), '')"
        reason = f"CASE WHEN {text} IS NOT NULL THEN {sql_literal(name + ': ')} || left({text}, 60) || ' is not a valid {dtype}' END"
        return f"TRY_CAST(nullif(trim(CAST({src} AS VARCHAR)), '') AS {dtype})", reason

    def _by_hand(self, status_map: Mapping[str, str]) -> str:
        """SQL for the status the source's ``status_map`` gives the row's raw code (NULL if none); "" without a map.

        A key ``<carrier_code>/<code>`` is that carrier's code only, and wins over the bare ``<code>``.
        """
        if not status_map or not {"status", "status_raw"} <= self.cols:
            return ""
        items = ", ".join(f"{sql_literal(code)}: {sql_literal(status)}" for code, status in sorted(status_map.items()))
        code = _trimmed("CAST(m.status_raw AS VARCHAR)")
        if "carrier_code" in self.cols and any("/" in key for key in status_map):
            carrier = _trimmed("CAST(m.carrier_code AS VARCHAR)")
            return f"coalesce(MAP {{{items}}}[{carrier} || '/' || {code}], MAP {{{items}}}[{code}])"
        return f"MAP {{{items}}}[{code}]"

    def _with_unknown_countries(self, extras: str) -> str:
        """``extras`` with the text of each country column no table knows as ``<column>_raw``, so the raw value is
        kept beside its NULL code; a row whose countries are known (or absent) keeps its extras as they are."""
        countries = sorted(COUNTRY_COLUMNS & self.cols)
        if not countries:
            return extras
        raw = {c: _unknown_country(c) for c in countries}
        patch = "json_object(" + ", ".join(f"'{c}_raw', {sql}" for c, sql in raw.items()) + ")"
        unknown = " OR ".join(f"{sql} IS NOT NULL" for sql in raw.values())
        # Only into an object, or where the mapping gave none: other JSON stays as it is, text that is not JSON a reject.
        target = (f" AND (json_type({extras}) = 'OBJECT' OR {extras} IS NULL AND m.extras IS NULL)"
                  if "extras" in self.cols else "")
        return (f"CASE WHEN ({unknown}){target} THEN CAST(json_merge_patch(coalesce({extras}, '{{}}'), {patch}) "
                f"AS VARCHAR) ELSE {extras} END")

    def _inner(self, run_id: str, account_id: str, extracted_at: datetime) -> tuple[str, dict[str, str]]:
        """The typing layer over the mapping, and the reason per column the outer layer checks (over typed columns)."""
        consts = {
            "provider": sql_literal(self.provider), "account_id": sql_literal(account_id), "run_id": sql_literal(run_id),
            "extracted_at": f"TIMESTAMPTZ {sql_literal(extracted_at.isoformat())}",
        }
        inner, outer_reasons, reasons = [], {}, []
        for f in self.table.columns:
            if f.name in COMMON_NAMES:
                inner.append(f'{consts[f.name]} AS "{f.name}"')
                continue
            expr, reason = self._typed(f)
            if f.name == "status":
                expr = f"coalesce({', '.join(filter(None, (expr, self.by_hand, sql_literal('unknown'))))})"
            if f.name == "status" and "status" in self.cols:
                reasons.append(f"CASE WHEN m.status IS NOT NULL AND m.status NOT IN ({', '.join(map(sql_literal, statuses.STATUSES))}) "
                               f"THEN 'status: ' || m.status || ' is not a canonical status' END")
            if f.name in ("event_id", "record_hash", "is_final") and f.name not in self.cols:
                expr = "NULL"
            if f.name == "extras":
                expr = self._with_unknown_countries(expr)
            inner.append(f'{expr} AS "{f.name}"')
            if reason:
                inner.append(f'm."{f.name}" AS "__raw_{f.name}"')
                outer_reasons[f.name] = f'CASE WHEN "{f.name}" IS NULL THEN {reason} END'
        if "reject_reason" in self.cols:
            reasons.append("m.reject_reason")
        if self.row_zone:
            unknown_zone = f'({_ROW_ZONE_TEXT} IS NOT NULL AND "tz".name IS NULL)'
            reasons.append(f"CASE WHEN {unknown_zone} THEN 'time_zone: ' || {_ROW_ZONE_TEXT} "
                           "|| ' is not a time zone name (IANA, e.g. Europe/Paris)' END")
            inner.append(f"{_ROW_ZONE.format(source=self.zone_sql)} AS __zone")
            inner.append(f"{unknown_zone} AS __zone_unknown")
        unmapped = "m.status IS NULL AND m.status_raw IS NOT NULL" if {"status", "status_raw"} <= self.cols else "false"
        if self.by_hand:
            unmapped += f" AND {self.by_hand} IS NULL"
        countries = sorted(COUNTRY_COLUMNS & self.cols)
        unknown = [_unknown_country(c) for c in countries]
        inner.append(f"{unmapped} AS __unmapped")
        inner.append(f"coalesce({', '.join(unknown) or 'NULL'}) AS __country_raw")
        counters = " || ".join(f"coalesce(({expr}) || chr(30), '')" for expr in self.mapping.counters)
        inner.append(f"{counters or chr(39) + chr(39)} AS __counters")
        inner.append(f"nullif(concat_ws('; ', {', '.join(reasons) or 'NULL'}), '') AS __reason_inner")
        inner.append("m AS __m")
        joins = "".join(
            f' LEFT JOIN country_names AS "cn_{c}" ON "cn_{c}".name = lower(trim(CAST(m."{c}" AS VARCHAR)))'
            for c in countries)
        if self.row_zone:
            joins += f' LEFT JOIN time_zone_names AS "tz" ON "tz".key = lower({_ROW_ZONE_TEXT})'
        return f"SELECT {', '.join(inner)} FROM ({self.mapping.sql}) AS m{joins}", outer_reasons

    def sql(self, run_id: str, account_id: str, extracted_at: datetime) -> str:
        """Every mapped row, typed, with ``__reason`` (NULL for a row that loads), ``__record`` (the mapped
        row as JSON, for rejects) and the bookkeeping columns ``__unmapped``, ``__status_raw``,
        ``__country_raw`` and ``__counters``."""
        inner, type_reasons = self._inner(run_id, account_id, extracted_at)
        t = self.table
        final = f"status IN ({', '.join(map(sql_literal, sorted(statuses.ALWAYS_FINAL)))})"
        derived = {}
        if "event_id" in t.column_names:
            core_id = keys.event_id_sql(sql_literal(self.provider), "coalesce(tracking_number, shipment_id)",
                                        "occurred_at", "status_raw", "description")
            derived["event_id"] = core_id if "event_id" not in self.cols else f"coalesce(event_id, {core_id})"
        if "is_final" in t.column_names:
            derived["is_final"] = final if "is_final" not in self.cols else f"coalesce(is_final, {final})"
        if "record_hash" in t.column_names:
            content = [c for c in t.column_names if c not in COMMON_NAMES and c != "record_hash"]
            derived["record_hash"] = keys.record_hash_sql([f"\"{c}\"" for c in content])

        def ref(c: str) -> str:
            return derived.get(c, f'"{c}"')

        select = [f'{ref(c)} AS "{c}"' for c in t.column_names]
        # A derived event_id or snapshot hash is an MD5, never NULL: only mapped values can be missing.
        # A value that came but could not be read has its own reason: "missing" is for one that did not come.
        # So is a time in a zone that is not one: the row's time_zone reason says why.
        def unread(name: str) -> str:
            zone = "AND NOT __zone_unknown " if self.row_zone and name in self.times else ""
            return (f"AND ({type_reasons[name]}) IS NULL " if name in type_reasons else "") + zone

        missing = [f"CASE WHEN {ref(f.name)} IS NULL {unread(f.name)}THEN '{f.name}: missing' END"
                   for f in t.columns if not f.nullable and f.name not in COMMON_NAMES and f.name != "record_hash"
                   and not (f.name == "event_id" and "event_id" in derived)]
        reason = f"nullif(concat_ws('; ', __reason_inner, {', '.join([*type_reasons.values(), *missing]) or 'NULL'}), '')"
        status_raw = "status_raw" if "status_raw" in t.column_names else "NULL"
        typed = (f"SELECT {', '.join(select)}, {reason} AS __reason, __unmapped, {status_raw} AS __status_raw, "
                 f"__country_raw, __counters, __m FROM ({inner})")
        return f"SELECT * EXCLUDE (__m), CASE WHEN __reason IS NOT NULL THEN CAST(to_json(__m) AS VARCHAR) END AS __record FROM ({typed})"
