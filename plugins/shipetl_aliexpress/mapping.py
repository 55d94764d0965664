"""AliExpress replies -> ``orders``, ``order_items``, ``shipments``, ``tracking_events``, as DuckDB SQL.

Bodies are read as JSON, not as a fixed STRUCT, because one API sends one list in four shapes
(providers.md 2.8, 6.3): an XML-style wrapper (``{"detail_node": [...]}``), a bare list, ``{}`` for an
empty list, and a bare object for a one-item list; numbers may come as strings. :func:`as_list` folds
all four into a ``JSON[]``.

Keys and identities:

* One shipment per parcel (``tracking_detail[]``): ``shipment_id`` is its ``mail_no``; a parcel without a
  number yet is keyed ``<order_id>-P<position>`` (1-based, in reply order). Once that parcel has a number,
  the extractor names the open placeholder in ``meta.placeholders`` and a last snapshot retires it
  (``is_final``, ``extras.superseded_by`` = the number); its earlier events keep the placeholder key.
* ``event_id`` hashes the ORDER id, not the parcel key, with the UTC instant, ``tracking_name`` and
  ``tracking_detail_desc``, so a node seen first under a numberless parcel is not stored again once the
  number appears. Identical nodes of different parcels of one order are told apart by a rank among
  those parcels (added to the hash only from the second one on).
* ``gmt_create`` is naive local text, read in the source's ``timezone`` (default ``America/Los_Angeles``).
* ``carrier_code`` is the parcel's ``carrier_name`` (seed 002: "carrier name", e.g. "AliExpress standard
  shipping"), lower-cased with every run of characters other than letters and digits turned into one ``_``
  (``aliexpress_standard_shipping``), the form of every carrier code in the warehouse. It is a logistics
  service rather than a company (providers.md 2.8), which is all the tracking reply says; ``service`` keeps
  the name as sent. A parcel without a name has no carrier code.
"""

from __future__ import annotations

from shipetl import TableMapping

from .statuses import LOGISTICS_NAMESPACE, ORDER_NAMESPACE, node_final_sql, node_status_sql

ORDER_BODY = "JSON"
TRACKING_BODY = "JSON"
ORDER_RESPONSE = "aliexpress_trade_ds_order_get_response"
TRACKING_RESPONSE = "aliexpress_ds_order_tracking_get_response"


def as_list(expr: str, wrapper: str) -> str:
    """SQL folding a JSON list in any of AliExpress's shapes into ``JSON[]`` (absent, null or ``{}`` -> [])."""
    inner = f"json_extract({expr}, '$.{wrapper}')"
    return f"""(CASE json_type({expr})
        WHEN 'ARRAY' THEN CAST({expr} AS JSON[])
        WHEN 'OBJECT' THEN CASE
            WHEN json_type({inner}) = 'ARRAY' THEN CAST({inner} AS JSON[])
            WHEN json_type({inner}) = 'OBJECT' THEN [{inner}]
            WHEN json_exists({expr}, '$.{wrapper}') OR len(json_keys({expr})) = 0 THEN CAST([] AS JSON[])
            ELSE [{expr}] END
        ELSE CAST([] AS JSON[]) END)"""


def _text(expr: str) -> str:
    """A JSON scalar as text, '' as NULL (AliExpress sends "" for absent values)."""
    return f"nullif(trim({expr}), '')"


def carrier_code_sql(name_sql: str) -> str:
    """SQL for the carrier code of a ``carrier_name``: its lower-case words joined by ``_``; blank -> NULL."""
    return f"nullif(trim(regexp_replace(lower(trim({name_sql})), '[^\\p{{L}}\\p{{N}}]+', '_', 'g'), '_'), '')"


# --- orders ----------------------------------------------------------------------------------

_ORDER_RESULT = f"body->'{ORDER_RESPONSE}'->'result'"

ORDERS_SQL = f"""
WITH o AS (SELECT meta->>'order_id' AS order_id, {_ORDER_RESULT} AS r FROM pages)
SELECT
    order_id,
    coalesce(status_of('{LOGISTICS_NAMESPACE}', r->>'logistics_status'),
             status_of('{ORDER_NAMESPACE}', r->>'order_status')) AS status,
    r->>'order_status' AS status_raw,
    {_text("r->>'gmt_create'")} AS created_at,
    {_text("r->>'order_paidtime_string'")} AS paid_at,
    r->'order_amount'->>'currency_code' AS currency,
    r->'order_amount'->>'amount' AS total_amount,
    len({as_list("r->'child_order_list'", 'aeop_child_order_info')}) AS item_count,
    json_object('logistics_status', r->>'logistics_status',
                'user_order_amount', r->'user_order_amount',
                'store_info', r->'store_info',
                'logistics_info', {as_list("r->'logistics_info_list'", 'aeop_order_logistics_info')},
                'gmt_create_local', r->>'gmt_create') AS extras
FROM o WHERE r IS NOT NULL
"""

ORDER_ITEMS_SQL = f"""
WITH o AS (
    SELECT meta->>'order_id' AS order_id, {as_list(f"{_ORDER_RESULT}->'child_order_list'", 'aeop_child_order_info')} AS lines
    FROM pages
), l AS (SELECT order_id, unnest(lines) AS c, generate_subscripts(lines, 1) AS pos FROM o)
SELECT
    order_id,
    coalesce(c->>'product_id', '?') || '#' || pos AS line_id,
    c->>'product_id' AS item_id,
    {_text("c->>'sku_id'")} AS variation_id,
    c->>'product_name' AS title,
    c->>'product_count' AS quantity,
    c->'product_price'->>'amount' AS unit_price,
    c->'product_price'->>'currency_code' AS currency,
    json_object('sku_attr', c->>'sku_attr', 'child_order_id', c->>'child_order_id',
                'shipping_fee', c->'shipping_fee', 'actual_tax_fee', c->'actual_tax_fee') AS extras
FROM l
"""

# --- tracking --------------------------------------------------------------------------------

_STATUS = node_status_sql("descr", "name", "fallback")
_FINAL = node_final_sql("descr", "name")

_TRACKING_CTES = f"""
WITH ok AS (
    SELECT meta, body->'{TRACKING_RESPONSE}'->'result' AS result FROM pages
    WHERE lower(body->'{TRACKING_RESPONSE}'->'result'->>'ret') = 'true'
), listed AS (
    SELECT meta, {as_list("result->'data'->'tracking_detail_line_list'", 'tracking_detail')} AS parcels FROM ok
), parcels AS (
    SELECT meta->>'order_id' AS order_id, meta->>'unmatched_node_status' AS fallback,
           meta->>'logistics_status' AS logistics_status,
           unnest(parcels) AS p, generate_subscripts(parcels, 1) AS ppos
    FROM listed
), keyed AS (
    SELECT *, {_text("p->>'mail_no'")} AS mail_no,
           coalesce({_text("p->>'mail_no'")}, order_id || '-P' || ppos) AS shipment_id,
           {as_list("p->'detail_node_list'", 'detail_node')} AS nodes
    FROM parcels
), scans AS (
    SELECT order_id, shipment_id, mail_no, ppos, fallback, p->>'carrier_name' AS carrier_name,
           {carrier_code_sql("p->>'carrier_name'")} AS carrier_code,
           unnest(nodes) AS node, generate_subscripts(nodes, 1) AS npos
    FROM keyed
), nodes AS (
    SELECT *, {_text("node->>'time_stamp'")} AS ts, TRY_CAST(node->>'time_stamp' AS DOUBLE) AS ts_num,
           node->>'tracking_name' AS name, node->>'tracking_detail_desc' AS descr
    FROM scans
), classified AS (
    SELECT *, {_STATUS} AS status, {_FINAL} AS final,
           dense_rank() OVER (PARTITION BY order_id, ts_num, name, descr ORDER BY ppos) AS twin
    FROM nodes
)
"""

EVENTS_SQL = _TRACKING_CTES + """
SELECT
    md5(concat_ws(chr(31), 'aliexpress', order_id, CAST(epoch_us(utc_from_epoch_ms(ts)) AS VARCHAR),
                  coalesce(name, ''), coalesce(descr, ''), CASE WHEN twin > 1 THEN CAST(twin AS VARCHAR) END)) AS event_id,
    shipment_id,
    mail_no AS tracking_number,
    carrier_code,
    ts AS occurred_at,
    name AS status_raw,
    status,
    descr AS description,
    json_object('order_id', order_id, 'carrier_name', carrier_name, 'parcel_position', ppos) AS extras
FROM classified
"""

SHIPMENTS_SQL = _TRACKING_CTES + f"""
, newest AS (
    SELECT shipment_id, arg_max(status, (ts_num, npos)) AS status, arg_max(name, (ts_num, npos)) AS status_raw,
           arg_max(final, (ts_num, npos)) AS is_final, CAST(max(ts_num) AS BIGINT) AS last_ms, count(*) AS scans
    FROM classified GROUP BY shipment_id
), current AS (
SELECT
    k.shipment_id,
    k.mail_no AS tracking_number,
    k.order_id,
    {carrier_code_sql("k.p->>'carrier_name'")} AS carrier_code,
    k.p->>'carrier_name' AS service,
    -- The order's logistics_status speaks for a parcel only while the parcel has no scan.
    CASE WHEN n.shipment_id IS NOT NULL THEN n.status
         ELSE status_of('{LOGISTICS_NAMESPACE}', k.logistics_status) END AS status,
    CASE WHEN n.shipment_id IS NOT NULL THEN n.status_raw ELSE k.logistics_status END AS status_raw,
    CASE WHEN n.shipment_id IS NOT NULL THEN n.is_final
         ELSE coalesce(final_of('{LOGISTICS_NAMESPACE}', k.logistics_status), false) END AS is_final,
    {_text("k.p->>'eta_time_stamps'")} AS estimated_delivery_at,
    CASE WHEN n.status = 'delivered' THEN n.last_ms END AS delivered_at,
    n.last_ms AS last_event_at,
    json_object('carrier_name', k.p->>'carrier_name', 'parcel_position', k.ppos,
                'package_items', {as_list("k.p->'package_item_list'", 'package_item')},
                'scans', coalesce(n.scans, 0)) AS extras
FROM keyed AS k LEFT JOIN newest AS n USING (shipment_id)
), retired AS (
    -- Open numberless parcels of this order that now have a number: their key is retired.
    SELECT meta->>'order_id' AS order_id, unnest(CAST(meta->'placeholders' AS VARCHAR[])) AS shipment_id FROM ok
)
SELECT * FROM current
UNION ALL BY NAME
SELECT r.shipment_id, r.order_id, c.carrier_code, c.service, coalesce(c.status, 'unknown') AS status, c.status_raw,
       true AS is_final,
       json_object('superseded_by', c.shipment_id, 'parcel_position', CAST(split_part(r.shipment_id, '-P', 2) AS INTEGER))
           AS extras
FROM retired AS r
LEFT JOIN current AS c ON c.order_id = r.order_id
     AND CAST(c.extras->>'parcel_position' AS INTEGER) = CAST(split_part(r.shipment_id, '-P', 2) AS INTEGER)
WHERE r.shipment_id NOT IN (SELECT shipment_id FROM current)
"""

ORDER_MAPPINGS = (
    TableMapping("orders", ORDERS_SQL, {"created_at": "local", "paid_at": "local"}),
    TableMapping("order_items", ORDER_ITEMS_SQL),
)
TRACKING_MAPPINGS = (
    TableMapping("shipments", SHIPMENTS_SQL,
                 {"estimated_delivery_at": "epoch_ms", "delivered_at": "epoch_ms", "last_event_at": "epoch_ms"}),
    TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "epoch_ms"}),
)
