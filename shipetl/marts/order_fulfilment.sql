-- order_fulfilment: every order with a ship-by deadline, and whether the carrier had it in time.
-- Orders meet their shipments by provider, account and order_id (a marketplace's own logistics data).
--
-- shipments            parcels of the order
-- handed_over_at       earliest shipment_timeline.handed_over_at of its parcels (each parcel's first carrier
--                      scan, else its shipped_at): pending, info_received and exception scans (a cancellation,
--                      a failed pick-up) never count as the hand-over
-- fulfilment_status    the first rule that holds (order states from analytics_order_state(provider, order_status_raw)):
--                        cancelled         the order is cancelled, whatever its parcels did: neither on time nor late
--                        late              handed over after ship_by_at
--                        on_time           handed over on or before ship_by_at
--                        cancel_requested  not handed over, the buyer's cancellation awaits the seller
--                        awaiting_payment  not handed over, not paid yet: no ship-by obligation yet
--                        overdue           not handed over, ship_by_at before analytics_as_of()
--                        open              not handed over, ship-by still ahead
--                      Missed ship-by = late + overdue.
-- hours_after_ship_by  handed_over_at - ship_by_at in hours (negative: early), for on_time and late orders only
CREATE OR REPLACE {temp}VIEW order_fulfilment AS
WITH handover AS (
    SELECT provider, account_id, order_id,
           count(*) AS shipments,
           min(handed_over_at) AS handed_over_at
    FROM shipment_timeline
    WHERE order_id IS NOT NULL
    GROUP BY ALL
), judged AS (
    SELECT o.provider, o.account_id, o.order_id, o.status AS order_status, o.status_raw AS order_status_raw,
           o.created_at, o.paid_at, o.ship_by_at, o.destination_country,
           coalesce(h.shipments, 0) AS shipments,
           h.handed_over_at,
           analytics_order_state(o.provider, o.status_raw) AS order_state,
           CASE WHEN order_state = 'cancelled' THEN 'cancelled'
                WHEN h.handed_over_at > o.ship_by_at THEN 'late'
                WHEN h.handed_over_at IS NOT NULL THEN 'on_time'
                WHEN order_state IS NOT NULL THEN order_state
                WHEN o.ship_by_at < analytics_as_of() THEN 'overdue'
                ELSE 'open' END AS fulfilment_status
    FROM orders_latest o
    LEFT JOIN handover h USING (provider, account_id, order_id)
    WHERE o.ship_by_at IS NOT NULL
)
SELECT * EXCLUDE (order_state),
       CASE WHEN fulfilment_status IN ('on_time', 'late') THEN epoch(handed_over_at - ship_by_at) / 3600 END
           AS hours_after_ship_by
FROM judged
