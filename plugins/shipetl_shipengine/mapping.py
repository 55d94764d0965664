"""ShipEngine tracking replies -> ``shipments`` and ``tracking_events``, as DuckDB SQL over the raw pages.

Time rule (providers.md 6.1): an event's instant is ``occurred_at`` unless ``carrier_occurred_at`` carries
an explicit non-Z offset, which then wins (USPS replies double-convert ``occurred_at``).
``carrier_occurred_at`` is kept as text in ``occurred_at_local``: its ``Z`` is not proof of UTC. A scan whose two
times are the same midnight (the seed's ``NT``) was never converted: ``extras.occurred_at_precision`` is
``date`` (else null), its instant that midnight in UTC as sent.
Event status, first that applies (providers.md 3.5, 6.1):

1. the event's own ``status_detail_code`` (ShipEngine's, documented), unless it is ``CARRIER_STATUS_NOT_MAPPED``;
2. the carrier's table for its ``carrier_status_code`` (else ``event_code``), where ShipEngine's own per-event
   ``status_code`` is absent or says no more than in transit or unknown (AC, IT, UN: "refined by detail",
   and a carrier code the table knows is such a refinement, GUESS). A NY, AT, DE, SP or EX of the event's
   own stands: a carrier table refines ShipEngine's status, it never contradicts it;
3. the event's own ``status_code`` (``UN`` / ``CARRIER_STATUS_NOT_MAPPED``: ShipEngine itself says
   ``unknown``, and that is a mapping, not counted);
4. an event with no status of its own (the seed's shape): the newest event of the reply takes the reply's
   top-level status, older ones stay ``unknown`` (GUESS of 3.5).

A shipment's status is the reply's top-level one (a reply without a ``status_code`` takes the coarse
``tracking_status`` its label was listed with in this run, providers.md 3.5), except that a parcel delivered after a scan of
``RETURN_TO_SENDER`` is ``returned`` (final): ShipEngine has no status for "back at the sender", and the
delivery that follows the turn back is that (providers.md 3.5, GUESS). Its ``delivered_at`` is
``actual_delivery_date`` where that carries an offset; a delivered parcel whose date is naive or absent (no
instant, providers.md 6.1; the text stays in extras) takes its newest scan's instant (GUESS).

"Stay unknown" means the mapping leaves ``status`` NULL: core writes ``unknown`` and counts the event's raw
code as unmapped (``tracking_events:<code>`` in the run summary, listed in the ``status_unmapped`` log line),
so codes no table knows are visible instead of silently folded in.

Personal data (providers.md 3.6: an event's ``signer`` and ``company_name``) goes through ``pii(...)`` into
extras; ``extras.signed`` (true, else null) says whether someone signed whatever the mode. The provider sets
``pii_key_optional``: a source with the default ``pii: hash`` and no ``credentials.pii_key`` has them
dropped rather than being refused.
"""

from shipetl import TableMapping, sql_literal

from .statuses import REFINABLE_BY_CARRIER

_EVENT = (
    "STRUCT(occurred_at VARCHAR, carrier_occurred_at VARCHAR, description VARCHAR, city_locality VARCHAR, "
    "state_province VARCHAR, postal_code VARCHAR, country_code VARCHAR, company_name VARCHAR, signer VARCHAR, "
    "event_code VARCHAR, carrier_detail_code VARCHAR, status_code VARCHAR, status_detail_code VARCHAR, "
    "status_description VARCHAR, carrier_status_code VARCHAR, carrier_status_description VARCHAR, "
    "latitude VARCHAR, longitude VARCHAR)"
)
TRACKING_BODY = (
    "STRUCT(tracking_number VARCHAR, tracking_url VARCHAR, status_code VARCHAR, status_detail_code VARCHAR, "
    "status_description VARCHAR, carrier_code VARCHAR, carrier_id VARCHAR, carrier_detail_code VARCHAR, "
    "carrier_status_code VARCHAR, carrier_status_description VARCHAR, ship_date VARCHAR, "
    f"estimated_delivery_date VARCHAR, actual_delivery_date VARCHAR, exception_description VARCHAR, events {_EVENT}[])"
)
LABELS_BODY = "STRUCT(total BIGINT, page BIGINT, pages BIGINT)"

# An ISO text with an explicit offset (or Z) is an instant; without one it is a local date-time.
_HAS_OFFSET = r"'(Z|[+-][0-9]{2}:?[0-9]{2})$'"
_EXPLICIT_OFFSET = r"'[+-][0-9]{2}:?[0-9]{2}$'"


# Whether someone signed for the parcel, without who (e.signer is personal: see above).
_SIGNED = "CASE WHEN nullif(trim(e.signer), '') IS NOT NULL THEN true END"


# ShipEngine statuses (of a bare per-event status_code) that a carrier's table may refine.
_REFINABLE = ", ".join(sql_literal(status) for status in REFINABLE_BY_CARRIER)


def _instant(expr: str) -> str:
    return f"CASE WHEN regexp_matches({expr}, {_HAS_OFFSET}) THEN {expr} END"


# A scan ``e``'s instant as text, by the time rule above; both mappings read it the same way.
_EVENT_INSTANT = (f"CASE WHEN regexp_matches(e.carrier_occurred_at, {_EXPLICIT_OFFSET}) THEN e.carrier_occurred_at "
                  "ELSE e.occurred_at END")


# A scan whose local and UTC times are the same midnight was never converted: the carrier gave a date, not a
# time (providers.md 3.4, the seed's NT scan). Its instant stays as sent; extras flag its precision.
_DATE_ONLY = ("CASE WHEN substr(e.carrier_occurred_at, 11, 9) = 'T00:00:00' "
              "AND left(e.carrier_occurred_at, 19) = left(e.occurred_at, 19) "
              f"AND NOT regexp_matches(e.carrier_occurred_at, {_EXPLICIT_OFFSET}) THEN 'date' END")


EVENTS_SQL = f"""
WITH replies AS (
    SELECT body.tracking_number AS tracking_number, body.carrier_code AS carrier_code,
           body.status_code AS top_code, body.status_detail_code AS top_detail, body.events AS events,
           list_transform(body.events, lambda e: {_EVENT_INSTANT}) AS instants
    FROM pages WHERE body.tracking_number IS NOT NULL
), timed AS (
    SELECT *, list_transform(instants, lambda i: utc_from_iso(i)) AS utcs FROM replies
), ranked AS (
    -- The newest scan of each reply, by time, never by position (replies are not reliably ordered); of scans
    -- at the same instant the first in the array (providers.md 6.1: ties kept in reverse array order), and
    -- any copy of it the reply repeats. The reply's own lists, unnested side by side, so no window sorts
    -- every scan of the file.
    SELECT tracking_number, carrier_code, top_code, top_detail, unnest(events) AS e, unnest(instants) AS instant,
           unnest(events) = events[list_position(utcs, list_max(utcs))] AS newest
    FROM timed
), placed AS (
    -- ShipEngine's own per-event status ("" and null alike: absent), and the carrier table's for the scan's
    -- code (carrier_status_code can arrive as a JSON number, 3 for "03": the event code is the fallback key).
    SELECT *,
           status_of('shipengine.detail', nullif(trim(e.status_detail_code), '')) AS own_detail,
           status_of('shipengine', nullif(trim(e.status_code), '')) AS own_code,
           nullif(trim(e.status_detail_code), '') IS NOT NULL OR nullif(trim(e.status_code), '') IS NOT NULL AS has_own,
           coalesce(status_of(carrier_code, e.carrier_status_code), status_of(carrier_code, e.event_code)) AS by_carrier
    FROM ranked
)
SELECT
    tracking_number AS shipment_id,
    tracking_number,
    carrier_code,
    instant AS occurred_at,
    e.carrier_occurred_at AS occurred_at_local,
    coalesce(nullif(e.event_code, ''), e.carrier_status_code) AS status_raw,
    coalesce(
        nullif(own_detail, 'unknown'),
        CASE WHEN own_code IS NULL OR own_code IN ({_REFINABLE}) THEN by_carrier END,
        own_code,
        own_detail,
        CASE WHEN newest AND NOT has_own
             THEN coalesce(status_of('shipengine.detail', top_detail), status_of('shipengine', top_code)) END
    ) AS status,
    e.description,
    e.city_locality AS city,
    e.state_province AS state,
    e.postal_code,
    e.country_code AS country,
    -- "" (UPS, providers.md 6.1) and any other text that is no number: no position.
    TRY_CAST(nullif(trim(e.latitude), '') AS DOUBLE) AS latitude,
    TRY_CAST(nullif(trim(e.longitude), '') AS DOUBLE) AS longitude,
    json_object('status_code', e.status_code, 'status_detail_code', e.status_detail_code,
                'carrier_status_code', e.carrier_status_code, 'signed', {_SIGNED},
                'signer', pii(nullif(trim(e.signer), '')), 'company_name', pii(nullif(trim(e.company_name), '')),
                'occurred_at_reported', e.occurred_at, 'occurred_at_precision', {_DATE_ONLY}) AS extras
FROM placed
"""

SHIPMENTS_SQL = f"""
WITH replies AS (
    SELECT *,
           -- The label's coarse tracking_status, for a reply without a status_code (providers.md 3.5).
           CASE WHEN nullif(trim(body.status_code), '') IS NULL THEN meta->>'label_tracking_status' END AS label_status,
           list_max(list_transform(body.events, lambda e: TRY_CAST({_EVENT_INSTANT} AS TIMESTAMPTZ))) AS newest_scan_at
    FROM pages WHERE body.tracking_number IS NOT NULL
), stated AS (
    SELECT *,
           coalesce(status_of('shipengine.detail', body.status_detail_code), status_of('shipengine', body.status_code),
                    status_of('shipengine.label', label_status)) AS own_status
    FROM replies
), turned AS (
    SELECT *,
           CASE WHEN own_status = 'delivered'
                     AND list_contains(list_transform(body.events, lambda e: e.status_detail_code), 'RETURN_TO_SENDER')
                THEN 'returned' ELSE own_status END AS shipment_status
    FROM stated
)
SELECT
    body.tracking_number AS shipment_id,
    body.tracking_number AS tracking_number,
    body.carrier_code AS carrier_code,
    meta->>'service_code' AS service,
    shipment_status AS status,
    coalesce(nullif(trim(body.status_code), ''), label_status) AS status_raw,
    coalesce(final_of('shipengine.detail', body.status_detail_code), final_of('shipengine', body.status_code),
             final_of('shipengine.label', label_status)) AS is_final,
    meta->>'ship_from_country' AS origin_country,
    meta->>'ship_to_country' AS destination_country,
    meta->>'created_at' AS created_at,
    {_instant('body.ship_date')} AS shipped_at,
    {_instant('body.estimated_delivery_date')} AS estimated_delivery_at,
    -- A naive actual_delivery_date is no instant (providers.md 6.1): a delivered parcel then takes its newest
    -- scan's, written with its offset so it reads the same whatever the session's zone.
    coalesce({_instant('body.actual_delivery_date')},
             CASE WHEN shipment_status = 'delivered' THEN CAST(newest_scan_at AS VARCHAR) END) AS delivered_at,
    newest_scan_at AS last_event_at,
    body.tracking_url,
    json_object('label_id', meta->>'label_id', 'label_carrier_code', meta->>'label_carrier_code',
                'carrier_id', body.carrier_id, 'status_detail_code', body.status_detail_code,
                'ship_date', body.ship_date, 'estimated_delivery_date', body.estimated_delivery_date,
                'actual_delivery_date', body.actual_delivery_date,
                'exception_description', body.exception_description) AS extras
FROM turned
"""

# Where the explicit offset overruled occurred_at by an hour or more, counted per carrier (providers.md 6.1).
# Only an instant taken from carrier_occurred_at (then equal to occurred_at_local) can conflict.
TIME_CONFLICT = (
    "CASE WHEN m.occurred_at = m.occurred_at_local AND abs(epoch(utc_from_iso(m.occurred_at)) "
    "- epoch(utc_from_iso(m.extras->>'occurred_at_reported'))) >= 3600 THEN 'time_conflicts:' || m.carrier_code END"
)
TIMES = {"created_at": "iso", "shipped_at": "iso", "estimated_delivery_at": "iso", "delivered_at": "iso"}
TRACKING_MAPPINGS = (
    TableMapping("shipments", SHIPMENTS_SQL, TIMES),
    TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "iso"}, counters=(TIME_CONFLICT,)),
)
