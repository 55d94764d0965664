-- shipment_timeline: one row per shipment (its latest snapshot) with the milestones read from its scans.
--
-- first_event_at             first event of any kind, label information included
-- first_scan_at              first scan proving the carrier has the parcel: status in_transit,
--                            out_for_delivery, failed_attempt, available_for_pickup, delivered, returned or
--                            unknown (an `unknown` scan is still a carrier scan). Never pending or
--                            info_received (label, pick-up requested), never expired, and never exception:
--                            that status also holds cancellations, failed pick-ups and failed label orders,
--                            which are no hand-over (a delay scanned before any scan above is skipped too)
-- handed_over_at             when the carrier got the parcel: first_scan_at, else the shipment's own
--                            shipped_at (a source's pick-up time); null: the carrier never had it (so far)
-- picked_up_at               first in_transit event
-- first_out_for_delivery_at  first out_for_delivery event
-- delivered_at               first delivered event, else the shipment's own delivered_at
-- delivered_on               the day of delivered_at as delivered_by_eta reads it (below)
-- failed_attempts, exceptions  number of failed_attempt / exception events
-- estimated_delivery_at      newest ETA the carrier gave: carriers drop it once delivered (ShipEngine does),
--                            so it comes from the newest snapshot that had one
-- days_in_transit            first_scan_at to delivered_at; for a parcel still moving, to analytics_as_of()
-- delivered_by_eta           delivered on or before the ETA's day (carriers give ETAs as dates, loaded as UTC
--                            midnights): the delivery's day is its scan's local date where the provider sent
--                            one (occurred_at_local starting YYYY-MM-DD: a Los Angeles delivery at 7 pm is
--                            on its day, though 2 am the next day in UTC), else its UTC date
-- Scans join by provider and shipment_id, not account: a scan is stored once per provider (its event_id has
-- no account), so two accounts that see the same parcel (two API keys of one ShipEngine account) share it.
-- Dates and weeks are UTC whatever the session's TimeZone, but for delivered_on (above).
CREATE OR REPLACE {temp}VIEW shipment_timeline AS
WITH last_eta AS (
    SELECT provider, account_id, shipment_id, arg_max(estimated_delivery_at, extracted_at) AS estimated_delivery_at
    FROM shipments
    WHERE estimated_delivery_at IS NOT NULL
    GROUP BY ALL
), scans AS (
    SELECT provider, shipment_id,
           count(*) AS events,
           min(occurred_at) AS first_event_at,
           min(occurred_at) FILTER (WHERE status IN ('in_transit', 'out_for_delivery', 'failed_attempt',
                                                     'available_for_pickup', 'delivered', 'returned', 'unknown'))
               AS first_scan_at,
           min(occurred_at) FILTER (WHERE status = 'in_transit') AS picked_up_at,
           min(occurred_at) FILTER (WHERE status = 'out_for_delivery') AS first_out_for_delivery_at,
           min(occurred_at) FILTER (WHERE status = 'delivered') AS delivered_event_at,
           -- the first delivered scan's own local date, NULL if it has none (a struct: arg_min skips NULL values)
           arg_min({'day': try_cast(substr(occurred_at_local, 1, 10) AS DATE)}, occurred_at)
               FILTER (WHERE status = 'delivered').day AS delivered_event_local_date,
           count(*) FILTER (WHERE status = 'failed_attempt') AS failed_attempts,
           count(*) FILTER (WHERE status = 'exception') AS exceptions,
           max(occurred_at) AS last_event_at,
           arg_max(status, occurred_at) AS last_event_status,
           arg_max(description, occurred_at) AS last_event_description
    FROM tracking_events
    GROUP BY ALL
), joined AS (
    SELECT s.provider, s.account_id, s.shipment_id, s.tracking_number, s.order_id, s.carrier_code, s.service,
           s.origin_country, s.destination_country,
           coalesce(s.origin_country, '??') || '-' || coalesce(s.destination_country, '??') AS lane,
           s.status AS current_status, s.is_final, s.created_at, s.shipped_at,
           coalesce(e.events, 0) AS events,
           e.first_event_at, e.first_scan_at, coalesce(e.first_scan_at, s.shipped_at) AS handed_over_at,
           e.picked_up_at, e.first_out_for_delivery_at,
           coalesce(e.delivered_event_at, s.delivered_at) AS delivered_at,
           coalesce(e.delivered_event_local_date, timezone('UTC', coalesce(e.delivered_event_at, s.delivered_at))::DATE)
               AS delivered_on,
           coalesce(e.failed_attempts, 0) AS failed_attempts,
           coalesce(e.exceptions, 0) AS exceptions,
           coalesce(e.last_event_at, s.last_event_at) AS last_event_at,
           e.last_event_status, e.last_event_description,
           coalesce(s.estimated_delivery_at, eta.estimated_delivery_at) AS estimated_delivery_at
    FROM shipments_latest s
    LEFT JOIN scans e USING (provider, shipment_id)
    LEFT JOIN last_eta eta USING (provider, account_id, shipment_id)
)
SELECT *,
       epoch(coalesce(delivered_at, CASE WHEN NOT is_final THEN analytics_as_of() END) - first_scan_at) / 86400
           AS days_in_transit,
       delivered_on <= timezone('UTC', estimated_delivery_at)::DATE AS delivered_by_eta
FROM joined
