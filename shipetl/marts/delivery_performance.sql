-- delivery_performance: per provider, carrier, origin and destination country and ISO week.
--
-- week_start / iso_week   the UTC Monday (and 2025-W47 label) of the week the parcel was first scanned;
--                         without a scan yet, of its own created_at, else of its first event (a label
--                         event), else of its order's created_at (a parcel waiting for its number)
-- shipments               parcels of that week; delivered: how many of them are delivered so far. A parcel
--                         that ended (is_final) without the carrier ever having it (no handed_over_at, not
--                         delivered: a label cancelled or failed before pick-up) is no carrier's shipment and
--                         is left out
-- median_transit_days, p90_transit_days   first scan to delivery, over the delivered ones (interpolated)
-- delivered_with_eta      delivered parcels the carrier had given an ETA for
-- delivered_by_eta, on_time_share   of those, delivered on or before the ETA day, and the share (null: no ETA)
CREATE OR REPLACE {temp}VIEW delivery_performance AS
WITH cohort AS (
    SELECT t.*,
           date_trunc('week', timezone('UTC', coalesce(t.first_scan_at, t.created_at, t.first_event_at,
                                                       o.created_at)))::DATE AS week_start,
           CASE WHEN t.delivered_at IS NOT NULL THEN epoch(t.delivered_at - t.first_scan_at) / 86400 END AS transit_days
    FROM shipment_timeline t
    LEFT JOIN orders_latest o ON o.provider = t.provider AND o.account_id = t.account_id AND o.order_id = t.order_id
    WHERE NOT (t.is_final AND t.handed_over_at IS NULL AND t.delivered_at IS NULL)
)
SELECT provider, carrier_code, origin_country, destination_country, lane, week_start,
       strftime(week_start, '%G-W%V') AS iso_week,
       count(*) AS shipments,
       count(delivered_at) AS delivered,
       median(transit_days) AS median_transit_days,
       quantile_cont(transit_days, 0.9) AS p90_transit_days,
       count(*) FILTER (WHERE delivered_by_eta IS NOT NULL) AS delivered_with_eta,
       count(*) FILTER (WHERE delivered_by_eta) AS delivered_by_eta,
       count(*) FILTER (WHERE delivered_by_eta) / nullif(count(*) FILTER (WHERE delivered_by_eta IS NOT NULL), 0)
           AS on_time_share
FROM cohort
GROUP BY ALL
