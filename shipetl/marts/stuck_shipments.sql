-- stuck_shipments: parcels not in a final status with no scan for analytics_stuck_after_days() days
-- (pipeline setting analytics.stuck_after_days, default 5) as of analytics_as_of() (default: now).
--
-- quiet_since         newest scan, or label creation for a parcel never scanned
-- days_without_scan   analytics_as_of() - quiet_since, in days
-- A parcel the carrier never had (no handed_over_at) whose order is cancelled (analytics_order_state) is not
-- stuck, even while its own status is not final yet: nothing is left to move. (A cancelled parcel is final.)
CREATE OR REPLACE {temp}VIEW stuck_shipments AS
SELECT provider, account_id, shipment_id, tracking_number, order_id, carrier_code, service, lane, current_status,
       created_at, first_scan_at, last_event_at, last_event_status, last_event_description, estimated_delivery_at,
       coalesce(last_event_at, created_at) AS quiet_since,
       epoch(analytics_as_of() - coalesce(last_event_at, created_at)) / 86400 AS days_without_scan,
       analytics_as_of() AS as_of
FROM shipment_timeline t
WHERE NOT is_final
  AND NOT (handed_over_at IS NULL AND EXISTS (
      SELECT 1 FROM orders_latest o
      WHERE o.provider = t.provider AND o.account_id = t.account_id AND o.order_id = t.order_id
        AND analytics_order_state(o.provider, o.status_raw) = 'cancelled'))
  AND coalesce(last_event_at, created_at) <= analytics_as_of() - to_days(analytics_stuck_after_days())
