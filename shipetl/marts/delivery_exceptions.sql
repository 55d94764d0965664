-- delivery_exceptions: failed delivery attempts, returns and exceptions per carrier and reason.
--
-- kind       the scans' canonical status: failed_attempt, returned or exception
-- reason     the scan text as the carrier wrote it, else its raw code
-- events     scans of that kind and reason; shipments: distinct parcels that had one
-- share_of_carrier_shipments   shipments / every parcel of that provider and carrier
-- A parcel that ended (is_final) without the carrier ever having it (no handed_over_at, not delivered: a
-- label cancelled or failed before pick-up) counts in neither: its exception scan is the seller's or
-- buyer's cancellation, not a delivery exception. Same rule as delivery_performance.
CREATE OR REPLACE {temp}VIEW delivery_exceptions AS
WITH never_carried AS (
    SELECT provider, account_id, shipment_id
    FROM shipment_timeline
    WHERE is_final AND handed_over_at IS NULL AND delivered_at IS NULL
), carrier_totals AS (
    SELECT provider, carrier_code, count(*) AS carrier_shipments
    FROM shipments_latest
    ANTI JOIN never_carried USING (provider, account_id, shipment_id)
    GROUP BY ALL
)
SELECT e.provider, e.carrier_code, e.status AS kind,
       coalesce(nullif(trim(e.description), ''), e.status_raw, '(no text)') AS reason,
       count(*) AS events,
       count(DISTINCT (e.account_id, e.shipment_id)) AS shipments,
       min(e.occurred_at) AS first_seen_at,
       max(e.occurred_at) AS last_seen_at,
       count(DISTINCT (e.account_id, e.shipment_id)) / any_value(t.carrier_shipments) AS share_of_carrier_shipments
FROM tracking_events e
ANTI JOIN never_carried n ON n.provider = e.provider AND n.account_id = e.account_id AND n.shipment_id = e.shipment_id
LEFT JOIN carrier_totals t ON t.provider = e.provider AND t.carrier_code IS NOT DISTINCT FROM e.carrier_code
WHERE e.status IN ('failed_attempt', 'returned', 'exception')
GROUP BY e.provider, e.carrier_code, e.status, reason
