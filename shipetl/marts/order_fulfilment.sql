-- order_fulfilment: every order with a ship-by deadline, and whether the carrier had it in time.
-- Orders meet their shipments by provider, account and order_id (a marketplace's own logistics data).
--
-- shipments            parcels of the order
-- handed_over_at       first carrier scan of any of its parcels, else their earliest shipped_at
-- fulfilment_status    on_time | late (handed over after ship_by_at) |
--                      overdue (not handed over, ship-by passed as of analytics_as_of()) | open
-- hours_after_ship_by  handed_over_at - ship_by_at in hours (negative: early)
CREATE OR REPLACE {temp}VIEW order_fulfilment AS
WITH handover AS (
    SELECT provider, account_id, order_id,
           count(*) AS shipments,
           coalesce(min(first_scan_at), min(shipped_at)) AS handed_over_at
    FROM shipment_timeline
    WHERE order_id IS NOT NULL
    GROUP BY ALL
)
SELECT o.provider, o.account_id, o.order_id, o.status AS order_status, o.status_raw AS order_status_raw,
       o.created_at, o.paid_at, o.ship_by_at, o.destination_country,
       coalesce(h.shipments, 0) AS shipments,
       h.handed_over_at,
       CASE WHEN h.handed_over_at > o.ship_by_at THEN 'late'
            WHEN h.handed_over_at IS NOT NULL THEN 'on_time'
            WHEN o.ship_by_at < analytics_as_of() THEN 'overdue'
            ELSE 'open' END AS fulfilment_status,
       epoch(h.handed_over_at - o.ship_by_at) / 3600 AS hours_after_ship_by
FROM orders_latest o
LEFT JOIN handover h USING (provider, account_id, order_id)
WHERE o.ship_by_at IS NOT NULL
