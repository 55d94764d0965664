-- stuck_shipments: parcels not in a final status with no scan for analytics_stuck_after_days() days
-- (pipeline setting analytics.stuck_after_days, default 5) as of analytics_as_of() (default: now).
--
-- quiet_since         newest scan, or label creation for a parcel never scanned
-- days_without_scan   analytics_as_of() - quiet_since, in days
CREATE OR REPLACE {temp}VIEW stuck_shipments AS
SELECT provider, account_id, shipment_id, tracking_number, order_id, carrier_code, service, lane, current_status,
       created_at, first_scan_at, last_event_at, last_event_status, last_event_description, estimated_delivery_at,
       coalesce(last_event_at, created_at) AS quiet_since,
       epoch(analytics_as_of() - coalesce(last_event_at, created_at)) / 86400 AS days_without_scan,
       analytics_as_of() AS as_of
FROM shipment_timeline
WHERE NOT is_final
  AND coalesce(last_event_at, created_at) <= analytics_as_of() - to_days(analytics_stuck_after_days())
