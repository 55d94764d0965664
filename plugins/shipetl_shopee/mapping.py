"""Shopee pages -> ``orders``, ``order_items``, ``shipments``, ``tracking_events``, as DuckDB SQL.

- Every time is epoch seconds (kind ``epoch_s``); Shopee's ``0`` for "not yet" becomes NULL in core.
- Money is a JSON float in major units; the body types read it as VARCHAR, which keeps the JSON text
  (``2988.99``), and core casts that text to DECIMAL: no float arithmetic anywhere.
- Scalars are read as VARCHAR even where Shopee documents ints or booleans: types drift between
  markets (``goods_to_declare`` "T"/"F"), and one odd value must not fail a whole page.
- Personal data (buyer, recipient, notes, dropshipper) passes through ``pii(...)``.
- A shipment is one package (``shipment_id`` = ``package_number``, stable before and after its
  tracking number appears). Its status follows its newest scan when it has scans, else the package's
  ``logistics_status`` (providers.md 6.2).
- A cross-border return (a reply with a ``reversed_tracking_number`` or ``reversed_tracking_info``) is a
  second shipment, the return leg: ``shipment_id`` = ``<package_number>:return`` whatever its number,
  ``service`` = ``reversed_courier_name``, extras ``leg: return``; the forward shipment keeps its row and
  gains ``reversed_tracking_number`` in its extras. Reverse scans carry no status code (``status_raw`` is
  NULL), so the statuses are a rule (GUESS): the leg is ``returned`` (final) once the forward package's
  newest scan means ``returned``, else ``in_transit`` when it has reverse scans, else ``info_received``;
  a leg that never gets there stays open until core expires it for want of news. Each reverse scan is
  ``in_transit``: an event's status must not depend on later scans, since an event is stored once (its
  ``event_id`` has no status) and would keep whatever status the first poll gave it. A reverse scan's
  ``event_id`` hashes the leg's ``shipment_id`` where core's would hash its tracking number: scans that
  came before the return number are not stored again once it comes.
- An order requested from ``get_order_detail`` and missing from the reply becomes a reject.
"""

from shipetl import TableMapping, event_id_sql

_ADDRESS = ("STRUCT(name VARCHAR, phone VARCHAR, town VARCHAR, district VARCHAR, city VARCHAR, state VARCHAR, "
            "region VARCHAR, zipcode VARCHAR, full_address VARCHAR)")
_ITEM = ("STRUCT(item_id VARCHAR, item_name VARCHAR, item_sku VARCHAR, model_id VARCHAR, model_name VARCHAR, "
         "model_sku VARCHAR, model_quantity_purchased VARCHAR, model_original_price VARCHAR, "
         "model_discounted_price VARCHAR, wholesale VARCHAR, weight VARCHAR, add_on_deal VARCHAR, main_item VARCHAR, "
         "add_on_deal_id VARCHAR, promotion_type VARCHAR, promotion_id VARCHAR, order_item_id VARCHAR, "
         "promotion_group_id VARCHAR, image_info STRUCT(image_url VARCHAR))")
_PACKAGE = "STRUCT(package_number VARCHAR, logistics_status VARCHAR, shipping_carrier VARCHAR)"
_ORDER = (
    "STRUCT(order_sn VARCHAR, region VARCHAR, currency VARCHAR, cod VARCHAR, total_amount VARCHAR, "
    "order_status VARCHAR, shipping_carrier VARCHAR, payment_method VARCHAR, estimated_shipping_fee VARCHAR, "
    "message_to_seller VARCHAR, create_time VARCHAR, update_time VARCHAR, days_to_ship VARCHAR, "
    f"ship_by_date VARCHAR, buyer_user_id VARCHAR, buyer_username VARCHAR, recipient_address {_ADDRESS}, "
    "actual_shipping_fee VARCHAR, actual_shipping_fee_confirmed VARCHAR, goods_to_declare VARCHAR, note VARCHAR, "
    f"note_update_time VARCHAR, item_list {_ITEM}[], pay_time VARCHAR, dropshipper VARCHAR, "
    "dropshipper_phone VARCHAR, split_up VARCHAR, buyer_cancel_reason VARCHAR, cancel_by VARCHAR, "
    f"cancel_reason VARCHAR, fulfillment_flag VARCHAR, pickup_done_time VARCHAR, package_list {_PACKAGE}[], "
    "checkout_shipping_carrier VARCHAR, order_chargeable_weight_gram VARCHAR)"
)
ORDER_DETAIL_BODY = f"STRUCT(request_id VARCHAR, error VARCHAR, response STRUCT(order_list {_ORDER}[]))"
ORDER_LIST_BODY = "STRUCT(request_id VARCHAR, error VARCHAR)"
_EVENT = "STRUCT(update_time VARCHAR, description VARCHAR, logistics_status VARCHAR)"
_REVERSE_EVENT = "STRUCT(update_time VARCHAR, description VARCHAR)"
TRACKING_BODY = ("STRUCT(request_id VARCHAR, error VARCHAR, response STRUCT(order_sn VARCHAR, package_number VARCHAR, "
                 f"logistics_status VARCHAR, tracking_info {_EVENT}[], reversed_tracking_number VARCHAR, "
                 f"reversed_courier_name VARCHAR, reversed_tracking_info {_REVERSE_EVENT}[]))")
RETURN_LEG = ":return"  # shipment_id of a package's return leg: <package_number>:return

MISSING_ORDER_REASON = "order_sn listed by get_order_list but missing from get_order_detail"

ORDERS_SQL = f"""
WITH detail AS (SELECT unnest(body.response.order_list) AS o FROM pages)
SELECT
    o.order_sn AS order_id,
    status_of('shopee.order', o.order_status) AS status,
    o.order_status AS status_raw,
    o.create_time AS created_at,
    o.update_time AS updated_at,
    o.pay_time AS paid_at,
    o.ship_by_date AS ship_by_at,
    o.currency,
    o.total_amount,
    CASE WHEN lower(o.actual_shipping_fee_confirmed) = 'true' THEN o.actual_shipping_fee
         ELSE o.estimated_shipping_fee END AS shipping_fee,
    coalesce(nullif(o.recipient_address.region, ''), o.region) AS destination_country,
    pii(nullif(o.buyer_user_id, '0')) AS buyer_ref,
    pii(o.recipient_address.name) AS recipient_name,
    pii(o.recipient_address.phone) AS recipient_phone,
    pii(o.recipient_address.full_address) AS recipient_address,
    len(o.item_list) AS item_count,
    json_object(
        'region', o.region, 'cod', TRY_CAST(o.cod AS BOOLEAN), 'days_to_ship', TRY_CAST(o.days_to_ship AS INTEGER),
        'payment_method', nullif(o.payment_method, ''), 'shipping_carrier', nullif(o.shipping_carrier, ''),
        'checkout_shipping_carrier', nullif(o.checkout_shipping_carrier, ''),
        'estimated_shipping_fee', o.estimated_shipping_fee, 'actual_shipping_fee', o.actual_shipping_fee,
        'actual_shipping_fee_confirmed', TRY_CAST(o.actual_shipping_fee_confirmed AS BOOLEAN),
        'cancel_by', nullif(o.cancel_by, ''), 'cancel_reason', nullif(o.cancel_reason, ''),
        'buyer_cancel_reason', nullif(o.buyer_cancel_reason, ''), 'fulfillment_flag', nullif(o.fulfillment_flag, ''),
        'split_up', TRY_CAST(o.split_up AS BOOLEAN), 'pickup_done_at', utc_from_epoch_s(o.pickup_done_time),
        'note_update_at', utc_from_epoch_s(o.note_update_time),
        'order_chargeable_weight_gram', TRY_CAST(o.order_chargeable_weight_gram AS BIGINT),
        'package_numbers', list_transform(o.package_list, lambda p: p.package_number),
        'buyer_username', pii(o.buyer_username), 'message_to_seller', pii(nullif(o.message_to_seller, '')),
        'note', pii(nullif(o.note, '')), 'dropshipper', pii(nullif(o.dropshipper, '')),
        'dropshipper_phone', pii(nullif(o.dropshipper_phone, '')),
        'recipient_town', pii(nullif(o.recipient_address.town, '')),
        'recipient_district', pii(nullif(o.recipient_address.district, '')),
        'recipient_city', pii(nullif(o.recipient_address.city, '')),
        'recipient_state', pii(nullif(o.recipient_address.state, '')),
        'recipient_zipcode', pii(nullif(o.recipient_address.zipcode, ''))
    ) AS extras
FROM detail
UNION ALL BY NAME
SELECT missing AS order_id, '{MISSING_ORDER_REASON}' AS reject_reason
FROM (SELECT unnest(from_json(meta->'missing', '["VARCHAR"]')) AS missing FROM pages)
"""

ORDER_ITEMS_SQL = """
WITH detail AS (SELECT unnest(body.response.order_list) AS o FROM pages),
lines AS (SELECT o.order_sn AS order_sn, o.currency AS currency, unnest(o.item_list) AS i FROM detail)
SELECT
    order_sn AS order_id,
    -- Items of one bundle deal share order_item_id: the line is (order_item_id, item_id, model_id).
    concat_ws(':', i.order_item_id, i.item_id, i.model_id) AS line_id,
    i.item_id,
    nullif(i.model_id, '0') AS variation_id,
    coalesce(nullif(i.model_sku, ''), nullif(i.item_sku, '')) AS sku,
    i.item_name AS title,
    i.model_quantity_purchased AS quantity,
    i.model_original_price AS unit_price,
    -- Bundle-deal items report 0 here by design (not free): unknown, not zero.
    CASE WHEN i.promotion_type = 'bundle_deal' AND TRY_CAST(i.model_discounted_price AS DOUBLE) = 0 THEN NULL
         ELSE i.model_discounted_price END AS discounted_price,
    currency,
    json_object(
        'order_item_id', i.order_item_id, 'model_id', i.model_id, 'model_name', nullif(i.model_name, ''),
        'item_sku', nullif(i.item_sku, ''), 'model_sku', nullif(i.model_sku, ''),
        'model_discounted_price', i.model_discounted_price, 'weight', i.weight,
        'wholesale', TRY_CAST(i.wholesale AS BOOLEAN), 'add_on_deal', TRY_CAST(i.add_on_deal AS BOOLEAN),
        'main_item', TRY_CAST(i.main_item AS BOOLEAN), 'add_on_deal_id', nullif(i.add_on_deal_id, '0'),
        'promotion_type', nullif(i.promotion_type, ''), 'promotion_id', nullif(i.promotion_id, '0'),
        'promotion_group_id', nullif(i.promotion_group_id, '0'), 'image_url', i.image_info.image_url
    ) AS extras
FROM lines
"""

# Return legs: the pages whose reply names a return number or has reverse scans.
_LEGS = """legs AS (
    SELECT meta, meta->>'package_number' AS package, number, nullif(r.reversed_courier_name, '') AS courier,
           r.reversed_tracking_info AS reverse_scans,
           list_max(list_transform(r.reversed_tracking_info, lambda e: TRY_CAST(e.update_time AS BIGINT))) AS last_t
    FROM (SELECT meta, body.response AS r, nullif(body.response.reversed_tracking_number, '') AS number FROM pages)
    WHERE number IS NOT NULL OR len(r.reversed_tracking_info) > 0
)"""

SHIPMENTS_SQL = f"""
WITH scans AS (
    SELECT meta->>'package_number' AS package, e.logistics_status AS code, TRY_CAST(e.update_time AS BIGINT) AS t, pos
    FROM (SELECT meta, unnest(body.response.tracking_info) AS e,
                 generate_subscripts(body.response.tracking_info, 1) AS pos FROM pages)
), newest AS (
    -- Scans come newest-first, but order by time: ties keep the earlier array position.
    SELECT package, first(code ORDER BY t DESC, pos) AS code, max(t) AS last_t,
           max(t) FILTER (WHERE status_of('shopee.tracking', code) = 'delivered') AS delivered_t
    FROM scans WHERE t > 0 GROUP BY package
), packages AS (
    SELECT meta, meta->>'package_number' AS package, meta->>'logistics_status' AS package_status,
           nullif(body.response.reversed_tracking_number, '') AS reversed_number
    FROM pages
), {_LEGS}, returns AS (
    SELECT legs.*, coalesce(status_of('shopee.tracking', newest.code) = 'returned', false) AS returned
    FROM legs LEFT JOIN newest USING (package)
)
SELECT
    package AS shipment_id,
    meta->>'tracking_number' AS tracking_number,
    meta->>'order_sn' AS order_id,
    meta->>'carrier_code' AS carrier_code,
    meta->>'shipping_carrier' AS service,
    CASE WHEN newest.code IS NOT NULL THEN status_of('shopee.tracking', newest.code)
         ELSE status_of('shopee.logistics', package_status) END AS status,
    coalesce(newest.code, package_status) AS status_raw,
    CASE WHEN newest.code IS NOT NULL THEN final_of('shopee.tracking', newest.code)
         ELSE final_of('shopee.logistics', package_status) END AS is_final,
    meta->>'destination_country' AS destination_country,
    meta->>'pickup_done_time' AS shipped_at,
    delivered_t AS delivered_at,
    last_t AS last_event_at,
    -- A NULL in a merge patch adds nothing: extras without a return leg stay as they were.
    json_merge_patch(json_object('order_sn', meta->>'order_sn', 'package_number', package,
                                 'split', CAST(meta->'split' AS BOOLEAN), 'package_logistics_status', package_status),
                     json_object('reversed_tracking_number', reversed_number)) AS extras
FROM packages LEFT JOIN newest USING (package)
UNION ALL BY NAME
SELECT
    package || '{RETURN_LEG}' AS shipment_id,
    number AS tracking_number,
    meta->>'order_sn' AS order_id,
    meta->>'reversed_carrier_code' AS carrier_code,
    courier AS service,
    CASE WHEN returned THEN 'returned' WHEN len(reverse_scans) > 0 THEN 'in_transit' ELSE 'info_received' END
        AS status,
    returned AS is_final,
    last_t AS last_event_at,
    json_object('leg', 'return', 'order_sn', meta->>'order_sn', 'package_number', package) AS extras
FROM returns
"""

EVENTS_SQL = f"""
WITH {_LEGS}
SELECT
    meta->>'package_number' AS shipment_id,
    meta->>'tracking_number' AS tracking_number,
    meta->>'carrier_code' AS carrier_code,
    e.update_time AS occurred_at,
    status_of('shopee.tracking', e.logistics_status) AS status,
    e.logistics_status AS status_raw,
    e.description,
    json_object('order_sn', meta->>'order_sn', 'package_number', meta->>'package_number') AS extras
FROM (SELECT meta, unnest(body.response.tracking_info) AS e FROM pages)
UNION ALL BY NAME
SELECT
    -- Core's event_id, over the leg's shipment id rather than its number: the same as before the number came.
    {event_id_sql("'shopee'", f"package || '{RETURN_LEG}'", "utc_from_epoch_s(e.update_time)", "NULL",
                  "nullif(trim(e.description), '')")} AS event_id,
    package || '{RETURN_LEG}' AS shipment_id,
    number AS tracking_number,
    meta->>'reversed_carrier_code' AS carrier_code,
    e.update_time AS occurred_at,
    'in_transit' AS status,
    e.description,
    json_object('leg', 'return', 'order_sn', meta->>'order_sn', 'package_number', package) AS extras
FROM (SELECT *, unnest(reverse_scans) AS e FROM legs)
"""

ORDER_TIMES = {"created_at": "epoch_s", "updated_at": "epoch_s", "paid_at": "epoch_s", "ship_by_at": "epoch_s"}
DETAIL_MAPPINGS = (
    TableMapping("orders", ORDERS_SQL, ORDER_TIMES),
    TableMapping("order_items", ORDER_ITEMS_SQL),
)
TRACKING_MAPPINGS = (
    TableMapping("shipments", SHIPMENTS_SQL,
                 {"shipped_at": "epoch_s", "delivered_at": "epoch_s", "last_event_at": "epoch_s"}),
    TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "epoch_s"}),
)
