-- delivery_performance: per provider, carrier, origin and destination country and ISO week.
--
-- week_start / iso_week   the UTC Monday (and 2025-W47 label) of the week the parcel was first scanned,
--                         or its label was created when it has no scan yet
-- shipments               parcels of that week; delivered: how many of them are delivered so far. A parcel
--                         that ended (is_final) without the carrier ever having it (no handed_over_at, not
--                         delivered: a label cancelled or failed before pick-up) is no carrier's shipment and
--                         is left out
-- median_transit_days, p90_transit_days   first scan to delivery, over the delivered ones (interpolated)
-- delivered_with_eta      delivered parcels the carrier had given an ETA for
-- delivered_by_eta, on_time_share   of those, delivered on or before the ETA day, and the share (null: no ETA)
CREATE OR REPLACE {temp}VIEW delivery_performance AS
WITH cohort AS (
    SELECT *,
           date_trunc('week', timezone('UTC', coalesce(first_scan_at, created_at)))::DATE AS week_start,
           CASE WHEN delivered_at IS NOT NULL THEN epoch(delivered_at - first_scan_at) / 86400 END AS transit_days
    FROM shipment_timeline
    WHERE NOT (is_final AND handed_over_at IS NULL AND delivered_at IS NULL)
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
