"""Fuuffy order lists and tracking replies -> ``orders``, ``shipments``, ``tracking_events``, as DuckDB SQL.

Bodies are kept as raw JSON because ``data`` and ``tracking_msg_list`` sometimes arrive as JSON strings
(providers.md 4.6, 6.4); the SQL decodes either form. Event ``date`` is naive local text read in the
source's zone (default Asia/Hong_Kong); order times may be ISO with an offset or naive (the ``local``
kind takes both). The SQL that knows statuses is generated from the tables in :mod:`.statuses`:

* an event's status comes from its courier's code table (``status_of(carrier_code, code)``), except an
  SF "signed for" (80) left in a self-service locker, which is ``available_for_pickup``;
* a scan whose code is in no table (Kerry's, Hongkong Post's) takes, when it is the reply's newest scan,
  Fuuffy's own status of the parcel: the tracking ``order_status`` text ("Current tracking status", seed
  001) read by keyword, the way ShipEngine's newest scan takes the reply's top-level status (providers.md
  3.5; GUESS). Not when that text says the parcel is not with the courier yet (pending, info_received):
  beside a scan, such text lags behind (seed 001 itself pairs opCode 50 "collected" with 列印及安排取件).
  Older scans of such codes stay ``unknown`` and are counted as unmapped. An SF code the table maps to
  ``unknown`` on purpose (meaning unconfirmed, e.g. 607) stays ``unknown``: the parcel's text says
  nothing about that scan;
* a parcel's status is that of its newest status-setting scan (informational 8000 and ``unknown`` codes
  skipped; same second: later in the SF code sequence wins), else the Chinese ``order_status`` text by
  keyword (longest match), else what the order's status code implies.
"""

from __future__ import annotations

from shipetl import TableMapping, sql_literal

from .statuses import (
    COURIER_CARRIER_CODES,
    ORDER_NAMESPACE,
    ORDER_TEXT_KEYWORDS,
    REPLY_TEXT_BEHIND_SCANS,
    SF_EXPRESS,
    SF_INFORMATIONAL,
    SF_LOCKER_MARKERS,
    SF_LOCKER_STATUS,
    SF_OPCODE_SEQUENCE,
)

BODY = "JSON"
EVENT_TYPE = '[{"code": "VARCHAR", "location": "VARCHAR", "date": "VARCHAR", "message": "VARCHAR"}]'

# Order fields with a canonical column, and personal ones: everything else of an order goes to extras. The
# times stay there too, as sent: the local text beside the UTC columns (DESIGN: raw values kept).
ORDER_MAPPED_FIELDS = ("order_id", "order_status", "status", "currency", "total_amount", "shipping_fee",
                       "destination_country", "item_count")
ORDER_PERSONAL_FIELDS = ("receiver_name", "receiver_phone", "receiver_address", "receiver_email", "sender_name",
                         "sender_phone", "sender_address", "buyer_name", "buyer_email")
# Free text that can hold names and phone numbers (providers.md 6.4): kept in extras through pii().
ORDER_FREE_TEXT_FIELDS = ("remark",)


def _json_field(expr: str, key: str) -> str:
    """``expr.key`` as JSON, decoded first when Fuuffy sent that field as a JSON string."""
    path = sql_literal(f"$.{key}")
    return (f"CASE WHEN json_type({expr}, {path}) = 'VARCHAR' THEN json({expr} ->> {path}) "
            f"ELSE {expr} -> {path} END")


def _carrier_code(name_sql: str) -> str:
    """Carrier code for a courier name: the lookup table, else the name's lower-case words joined by ``_``."""
    entries = ", ".join(f"{sql_literal(k)}: {sql_literal(v)}" for k, v in COURIER_CARRIER_CODES.items())
    cleaned = f"lower(trim({name_sql}))"
    return (f"coalesce(MAP {{{entries}}}[{cleaned}], "
            f"nullif(trim(regexp_replace({cleaned}, '[^a-z0-9]+', '_', 'g'), '_'), ''))")


def _keyword_pick(text_sql: str) -> str:
    """STRUCT(status, final) of the longest keyword contained in ``text_sql``, or NULL."""
    ordered = sorted(ORDER_TEXT_KEYWORDS.items(), key=lambda kv: -len(kv[0]))
    items = ", ".join(f"{{'k': {sql_literal(k)}, 'status': {sql_literal(s)}, 'final': {str(f).lower()}}}"
                      for k, (s, f) in ordered)
    found = f"list_filter([{items}], lambda w: contains(coalesce({text_sql}, ''), w.k))[1]"
    return f"CASE WHEN {found} IS NOT NULL THEN struct_pack(status := {found}.status, final := {found}.final) END"


def _sequence(code_sql: str) -> str:
    entries = ", ".join(f"{sql_literal(c)}: {i}" for i, c in enumerate(SF_OPCODE_SEQUENCE))
    return f"coalesce(MAP {{{entries}}}[{code_sql}], {len(SF_OPCODE_SEQUENCE)})"


_LOCKER = " OR ".join(f"contains(coalesce(e.message, ''), {sql_literal(m)})" for m in SF_LOCKER_MARKERS)
_INFORMATIONAL = ", ".join(sql_literal(c) for c in SF_INFORMATIONAL)
_IS_LOCKER = f"(carrier_code = {sql_literal(SF_EXPRESS)} AND trim(e.code) = '80' AND ({_LOCKER}))"
_EVENT_STATUS = f"CASE WHEN {_IS_LOCKER} THEN {sql_literal(SF_LOCKER_STATUS)} ELSE status_of(carrier_code, trim(e.code)) END"
_EVENT_FINAL = f"CASE WHEN {_IS_LOCKER} THEN false ELSE final_of(carrier_code, trim(e.code)) END"
# A scan no code table places takes the reply's own status text when it is the newest scan, unless that text
# lags behind the scans (see the module docstring).
_BEHIND = ", ".join(sql_literal(st) for st in REPLY_TEXT_BEHIND_SCANS)
_TAKES_REPLY_STATUS = f"newest AND reply_pick.status NOT IN ({_BEHIND})"

# One row per reply with a tracking number, then one row per scan (the CTEs both mappings share).
_SCANS = f"""
WITH replies AS (
    SELECT meta, {_json_field('body', 'data')} AS d FROM pages
), parcels AS (
    SELECT meta, d,
           nullif(trim(d ->> '$.tracking_number'), '') AS tracking_number,
           {_carrier_code("coalesce(nullif(trim(d ->> '$.courier_name'), ''), nullif(trim(d ->> '$.shipping_provider'), ''), meta ->> 'shipping_provider')")} AS carrier_code,
           coalesce(from_json({_json_field('d', 'tracking_msg_list')}, '{EVENT_TYPE}'), []) AS msgs
    FROM replies
    WHERE nullif(trim(d ->> '$.tracking_number'), '') IS NOT NULL
), scans AS (
    SELECT tracking_number, carrier_code, d, unnest(msgs) AS e FROM parcels
), coded AS (
    SELECT *, {_EVENT_STATUS} AS code_status, {_EVENT_FINAL} AS code_final,
           TRY_CAST(replace(trim(e.date), 'T', ' ') AS TIMESTAMP) AS wall,
           {_sequence('trim(e.code)')} AS seq,
           {_keyword_pick("d ->> '$.order_status'")} AS reply_pick
    FROM scans
), ranked AS (
    -- The reply's newest scan: by wall time, a same-second tie by code sequence (ties beyond it all count).
    SELECT *, rank() OVER (PARTITION BY tracking_number ORDER BY wall DESC NULLS LAST, seq DESC) = 1 AS newest
    FROM coded
), typed AS (
    SELECT *,
           CASE WHEN code_status IS NULL AND {_TAKES_REPLY_STATUS} THEN reply_pick.status ELSE code_status END AS status,
           CASE WHEN code_status IS NULL AND {_TAKES_REPLY_STATUS} THEN reply_pick.final ELSE code_final END AS final
    FROM ranked
)"""

EVENTS_SQL = f"""{_SCANS}
SELECT
    tracking_number AS shipment_id,
    tracking_number,
    carrier_code,
    e.date AS occurred_at,
    e.date AS occurred_at_local,
    trim(e.code) AS status_raw,
    status,
    e.message AS description,
    e.location AS city,
    json_object('order_id', d ->> '$.order_id', 'courier_name', d ->> '$.courier_name') AS extras
FROM typed
"""

SHIPMENTS_SQL = f"""{_SCANS},
newest AS (
    -- The scan that sets the parcel's status: newest by wall time, a same-second tie by code sequence.
    SELECT tracking_number,
           arg_max(struct_pack(code := trim(e.code), status := status, final := coalesce(final, false)), (wall, seq)) AS pick
    FROM typed
    WHERE status IS NOT NULL AND status <> 'unknown' AND trim(e.code) NOT IN ({_INFORMATIONAL})
    GROUP BY tracking_number
), span AS (
    SELECT tracking_number, arg_min(e.date, (wall, seq)) AS first_date, arg_max(e.date, (wall, seq)) AS last_date,
           arg_max(e.date, (wall, seq)) FILTER (WHERE status = 'delivered' AND trim(e.code) NOT IN ({_INFORMATIONAL}))
               AS delivered_date
    FROM typed GROUP BY tracking_number
), picked AS (
    SELECT p.*, n.pick AS event_pick, s.first_date, s.last_date, s.delivered_date,
           {_keyword_pick("p.d ->> '$.order_status'")} AS text_pick,
           CASE WHEN status_of({sql_literal(ORDER_NAMESPACE)}, upper(trim(p.meta ->> 'order_status'))) IS NOT NULL
                THEN struct_pack(status := status_of({sql_literal(ORDER_NAMESPACE)}, upper(trim(p.meta ->> 'order_status'))),
                                 final := final_of({sql_literal(ORDER_NAMESPACE)}, upper(trim(p.meta ->> 'order_status')))) END AS order_pick
    FROM parcels AS p
    LEFT JOIN newest AS n USING (tracking_number)
    LEFT JOIN span AS s USING (tracking_number)
)
SELECT
    tracking_number AS shipment_id,
    tracking_number,
    coalesce(nullif(trim(d ->> '$.order_id'), ''), meta ->> 'order_id') AS order_id,
    carrier_code,
    meta ->> 'service_type' AS service,
    coalesce(event_pick.status, text_pick.status, order_pick.status) AS status,
    d ->> '$.order_status' AS status_raw,
    coalesce(event_pick.final, text_pick.final, order_pick.final, false) AS is_final,
    d ->> '$.export_country' AS origin_country,
    d ->> '$.destination_country' AS destination_country,
    first_date AS shipped_at,
    CASE WHEN coalesce(event_pick.status, text_pick.status) = 'delivered' THEN delivered_date END AS delivered_at,
    last_date AS last_event_at,
    json_object('status_from', CASE WHEN event_pick IS NOT NULL THEN 'event' WHEN text_pick IS NOT NULL THEN 'order_status_text'
                                    WHEN order_pick IS NOT NULL THEN 'order_status_code' END,
                'status_code', event_pick.code, 'order_status_code', meta ->> 'order_status',
                'shipping_provider', d ->> '$.shipping_provider', 'courier_name', d ->> '$.courier_name') AS extras
FROM picked
"""

_ORDER_REMOVE = "{" + ", ".join(f'"{k}": null' for k in ORDER_MAPPED_FIELDS + ORDER_PERSONAL_FIELDS
                                + ORDER_FREE_TEXT_FIELDS) + "}"
_ORDER_FREE_TEXT = "json_object(" + ", ".join(f"'{k}', pii(o ->> '$.{k}')" for k in ORDER_FREE_TEXT_FIELDS) + ")"

ORDERS_SQL = f"""
WITH lists AS (
    SELECT {_json_field('body', 'data')} AS d FROM pages
), orders AS (
    SELECT unnest(CAST({_json_field('d', 'order_list')} AS JSON[])) AS o FROM lists
), coded AS (
    SELECT o, coalesce(nullif(trim(o ->> '$.order_status'), ''), nullif(trim(o ->> '$.status'), '')) AS code FROM orders
)
SELECT
    o ->> '$.order_id' AS order_id,
    status_of({sql_literal(ORDER_NAMESPACE)}, upper(code)) AS status,
    code AS status_raw,
    o ->> '$.create_time' AS created_at,
    o ->> '$.update_time' AS updated_at,
    o ->> '$.paid_time' AS paid_at,
    o ->> '$.currency' AS currency,
    o ->> '$.total_amount' AS total_amount,
    o ->> '$.shipping_fee' AS shipping_fee,
    o ->> '$.destination_country' AS destination_country,
    pii(o ->> '$.receiver_name') AS recipient_name,
    pii(o ->> '$.receiver_phone') AS recipient_phone,
    pii(o ->> '$.receiver_address') AS recipient_address,
    o ->> '$.item_count' AS item_count,
    -- A NULL in the patch removes the key: a dropped remark leaves none.
    json_merge_patch(o, '{_ORDER_REMOVE}', {_ORDER_FREE_TEXT}) AS extras
FROM coded
"""

ORDER_MAPPINGS = (
    TableMapping("orders", ORDERS_SQL, {"created_at": "local", "updated_at": "local", "paid_at": "local"}),
)
TRACKING_MAPPINGS = (
    TableMapping("shipments", SHIPMENTS_SQL,
                 {"shipped_at": "local", "delivered_at": "local", "last_event_at": "local"}),
    TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "local"}),
)
