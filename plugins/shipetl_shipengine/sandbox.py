"""ShipEngine's API in `shipetl sandbox`: labels and tracking from a seeded world, auth and limits as live.

The module stays whole (world builder, payload rendering, routes) because the three share one set of
provider tables; splitting would scatter the facts that have to be checked against providers.md 3 and 6.1.
Ground truth (``World.expected_events`` / ``expected_shipments``) is computed from the same storyline the
payloads are rendered from, so end-to-end tests can compare what the pipeline loaded with what is true.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings
from shipetl.sandbox.seed import fake_alnum, fake_id, fake_name, fake_phone, instant_between, rng, weighted

# --- Provider facts (providers.md 3 and 6.1) -----------------------------------------------------

DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)
LABELS_START = datetime(2025, 9, 1, tzinfo=UTC)
LABELS_END = datetime(2025, 12, 15, tzinfo=UTC)
LABELS_AT_SCALE_1 = 2000
DEFAULT_API_KEYS = ("TEST_sandbox_key", "sandbox_live_key")
DEFAULT_RATE_PER_MINUTE = 6000  # the live API allows 200 (test keys 20); high so the demo is quick
PAGE_SIZE_DEFAULT = 25
PAGE_SIZE_MAX = 500
AUTH_MESSAGE = "The API key is invalid. Please see https://www.shipengine.com/docs/auth"
RATE_MESSAGE = "You have exceeded the rate limit. Please see https://www.shipengine.com/docs/rate-limits"

LABEL_CARRIER_WEIGHTS = {"usps": 25, "stamps_com": 15, "ups": 22, "fedex": 20, "dhl_express": 8, "ontrac": 10}
LABEL_CARRIER_IDS = {"usps": "se-1000101", "stamps_com": "se-1000102", "ups": "se-1000103",
                     "fedex": "se-1000104", "dhl_express": "se-1000105", "ontrac": "se-1000106"}
# Tracking replies carry an integer carrier_id and name the carrier that moves the parcel.
TRACKING_CARRIER_IDS = {"usps": 1, "ups": 3, "fedex": 4, "fedex_walleted": 4, "dhl_express": 11, "ontrac": 40}
SERVICES = {
    "usps": ("usps_ground_advantage", "usps_priority_mail", "usps_first_class_mail"),
    "stamps_com": ("usps_ground_advantage", "usps_priority_mail"),
    "ups": ("ups_ground", "ups_2nd_day_air", "ups_next_day_air_saver"),
    "fedex": ("fedex_ground", "fedex_home_delivery", "fedex_2day"),
    "dhl_express": ("dhl_express_worldwide", "dhl_express_domestic"),
    "ontrac": ("ontrac_ground",),
}
TRACKING_URLS = {
    "usps": "https://tools.usps.com/go/TrackConfirmAction.action?tLabels={}",
    "ups": "https://www.ups.com/track?loc=en_US&tracknum={}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
    "dhl_express": "https://www.dhl.com/en/express/tracking.html?AWB={}&brand=DHL",
    "ontrac": "https://www.ontrac.com/tracking/?number={}",
}
STATUS_DESCRIPTIONS = {"AC": "Accepted", "IT": "In Transit", "DE": "Delivered", "EX": "Exception", "UN": "Unknown",
                       "AT": "Delivery Attempt", "NY": "Not Yet In System",
                       "SP": "Delivered To The Collection Location"}
LABEL_TRACKING_STATUS = {"AC": "in_transit", "IT": "in_transit", "NY": "in_transit", "AT": "in_transit",
                         "DE": "delivered", "EX": "error", "UN": "unknown", "SP": "delivered_to_service_point"}
DETAIL_DESCRIPTIONS = {
    "SHIPMENT_CREATED": "Shipment created", "AWAITING_PICKUP_DROP_OFF": "Awaiting pickup or drop off",
    "NOT_YET_RECEIVED_BY_CARRIER": "Not yet received by carrier", "PICKED_UP": "Picked up",
    "HUB_SCAN_IN": "Arrived at hub", "HUB_SCAN_OUT": "Departed hub", "IN_TRANSIT": "In transit",
    "RECEIVED_LOCAL_DELIVERY_DEPOT": "Received at local delivery depot", "CUSTOMS_PROCESSING": "Customs processing",
    "CARRIER_DELAYS": "Carrier delays", "OUT_FOR_DELIVERY": "Out for delivery", "DELIVERED": "Delivered",
    "DELIVERED_TO_NEIGHBOUR": "Delivered to neighbour",
    "DELIVERED_SPECIFIED_SAFE_PLACE": "Delivered to specified safe place",
    "ATTEMPTED_DELIVERY": "Attempted delivery",
    "AWAITING_COLLECTION_FROM_PICKUP_POINT": "Awaiting collection from pickup point",
    "RETURN_TO_SENDER": "Return to sender", "PARCEL_LOST": "Parcel lost", "HELD_BY_CUSTOMS": "Held by customs",
    "CARRIER_STATUS_NOT_MAPPED": "Carrier status not mapped",
}
# Storyline step -> (status_code, status_detail_code) ShipEngine would put on the event.
KINDS = {
    "created": ("AC", "SHIPMENT_CREATED"), "awaiting_dropoff": ("AC", "AWAITING_PICKUP_DROP_OFF"),
    "picked_up": ("IT", "PICKED_UP"), "hub_in": ("IT", "HUB_SCAN_IN"), "hub_out": ("IT", "HUB_SCAN_OUT"),
    "in_transit": ("IT", "IN_TRANSIT"), "nt": ("IT", "IN_TRANSIT"),
    "depot": ("IT", "RECEIVED_LOCAL_DELIVERY_DEPOT"), "customs": ("IT", "CUSTOMS_PROCESSING"),
    "delay": ("EX", "CARRIER_DELAYS"), "out_for_delivery": ("IT", "OUT_FOR_DELIVERY"),
    "delivered": ("DE", "DELIVERED"), "delivered_neighbour": ("DE", "DELIVERED_TO_NEIGHBOUR"),
    "delivered_safe_place": ("DE", "DELIVERED_SPECIFIED_SAFE_PLACE"), "attempted": ("AT", "ATTEMPTED_DELIVERY"),
    "pickup_point": ("SP", "AWAITING_COLLECTION_FROM_PICKUP_POINT"),
    "return_to_sender": ("EX", "RETURN_TO_SENDER"), "lost": ("EX", "PARCEL_LOST"),
    "held_customs": ("EX", "HELD_BY_CUSTOMS"), "unmapped": ("UN", "CARRIER_STATUS_NOT_MAPPED"),
}
# Carrier family -> storyline step -> (carrier event code, description).
CARRIER_EVENTS: dict[str, dict[str, tuple[str, str]]] = {
    "usps": {
        "created": ("GX", "Shipping Label Created, USPS Awaiting Item"),
        "awaiting_dropoff": ("MA", "Pre-Shipment Info Sent to USPS, USPS Awaiting Item"),
        "picked_up": ("03", "USPS picked up item"), "hub_in": ("10", "Arrived at USPS Regional Facility"),
        "hub_out": ("T1", "Departed USPS Regional Facility"), "in_transit": ("A1", "Arrived at USPS Facility"),
        "nt": ("NT", "In Transit to Next Facility"), "depot": ("07", "Arrived at Post Office"),
        "customs": ("CP", "Customs Clearance"), "delay": ("TL", "Moving Through Network"),
        "out_for_delivery": ("OF", "Out for Delivery"), "delivered": ("01", "Delivered, In/At Mailbox"),
        "delivered_neighbour": ("01", "Delivered, Left with Individual"),
        "delivered_safe_place": ("01", "Delivered, Front Door/Porch"),
        "attempted": ("02", "Notice Left (No Authorized Recipient Available)"),
        "pickup_point": ("17", "Available for Pickup"), "return_to_sender": ("09", "Return to Sender Processed"),
        "lost": ("53", "Missing Mail Search Closed"), "held_customs": ("CH", "Held in Customs"),
        "unmapped": ("XX", "Status Not Available"),
    },
    "ups": {
        "created": ("MP", "Shipper created a label, UPS has not received the package yet."),
        "awaiting_dropoff": ("MP", "Drop-Off At UPS Access Point Pending"), "picked_up": ("OR", "Pickup Scan"),
        "hub_in": ("AR", "Arrived at Facility"), "hub_out": ("DP", "Departed from Facility"),
        "in_transit": ("IP", "Processing at UPS Facility"), "depot": ("LC", "Arrived at Delivery Facility"),
        "customs": ("CR", "Import Scan"), "delay": ("WD", "Weather Delay"),
        "out_for_delivery": ("OT", "Out For Delivery Today"), "delivered": ("KB", "Delivered"),
        "delivered_neighbour": ("KB", "Delivered to Neighbor"),
        "delivered_safe_place": ("FS", "Delivered, Left at Front Door"),
        "attempted": ("48", "The receiver was not available for delivery."),
        "pickup_point": ("ZP", "Delivered to UPS Access Point. Awaiting Customer Pickup"),
        "return_to_sender": ("RS", "Returning to Sender"), "lost": ("LP", "Package Lost"),
        "held_customs": ("CH", "Held by Customs"), "unmapped": ("ZZ", "Status Unavailable"),
    },
    "fedex": {
        "created": ("OC", "Shipment information sent to FedEx"), "awaiting_dropoff": ("OC", "Label created"),
        "picked_up": ("PU", "Picked up"), "hub_in": ("AR", "Arrived at FedEx location"),
        "hub_out": ("DP", "Departed FedEx location"), "in_transit": ("IT", "In transit"),
        "depot": ("AR", "At local FedEx facility"), "customs": ("CC", "International shipment release - Import"),
        "delay": ("SE", "Shipment exception"), "out_for_delivery": ("OD", "On FedEx vehicle for delivery"),
        "delivered": ("DL", "Delivered"), "delivered_neighbour": ("DL", "Delivered to neighbor"),
        "delivered_safe_place": ("DL", "Left at front door"),
        "attempted": ("DE", "Customer not available or business closed"),
        "pickup_point": ("HL", "Ready for pickup at FedEx location"), "return_to_sender": ("RS", "Return to shipper"),
        "lost": ("LO", "Package lost"), "held_customs": ("CD", "Clearance delay"),
        "unmapped": ("XX", "Status unavailable"),
    },
    "dhl_express": {
        "created": ("SA", "Shipment information received"), "awaiting_dropoff": ("SA", "Awaiting drop off"),
        "picked_up": ("PU", "Shipment picked up"), "hub_in": ("AF", "Arrived at DHL Sort Facility"),
        "hub_out": ("DF", "Departed Facility"), "in_transit": ("PL", "Processed at"),
        "depot": ("AR", "Arrived at Delivery Facility"), "customs": ("CC", "Customs clearance status updated"),
        "delay": ("MD", "Missed delivery cycle"), "out_for_delivery": ("WC", "With delivery courier"),
        "delivered": ("OK", "Delivered"), "delivered_neighbour": ("OK", "Delivered - Signed for by neighbour"),
        "delivered_safe_place": ("OK", "Delivered - Left at safe place"),
        "attempted": ("NH", "Delivery attempted; recipient not home"),
        "pickup_point": ("SC", "Available for collection at DHL ServicePoint"),
        "return_to_sender": ("RR", "Returning to shipper"), "lost": ("LS", "Shipment lost"),
        "held_customs": ("CH", "Held by customs"), "unmapped": ("XX", "Status unavailable"),
    },
    "ontrac": {
        "created": ("OS", "Order Created"), "awaiting_dropoff": ("OS", "Awaiting package"),
        "picked_up": ("PU", "Package picked up"), "hub_in": ("PS", "Package received at facility"),
        "hub_out": ("DP", "Departed facility"), "in_transit": ("IT", "In transit"),
        "depot": ("PS", "Arrived at delivery facility"), "customs": ("CC", "Customs processing"),
        "delay": ("DY", "Delayed"), "out_for_delivery": ("OD", "Out for delivery"), "delivered": ("DL", "Delivered"),
        "delivered_neighbour": ("DL", "Delivered to neighbor"), "delivered_safe_place": ("DL", "Delivered, front door"),
        "attempted": ("AT", "Delivery attempted"), "pickup_point": ("HP", "Held for pickup"),
        "return_to_sender": ("RS", "Return to sender"), "lost": ("LO", "Package lost"),
        "held_customs": ("CH", "Held by customs"), "unmapped": ("XX", "Unknown"),
    },
}
# Scenario -> (weight, steps after the transit middle). "delivered" picks one of three delivered steps.
SCENARIOS = {
    "delivered": (55, ("out_for_delivery", "delivered")), "delayed": (5, ("delay", "in_transit", "out_for_delivery",
                                                                           "delivered")),
    "attempted": (5, ("out_for_delivery", "attempted")), "pickup_point": (5, ("depot", "pickup_point")),
    "return": (4, ("out_for_delivery", "attempted", "return_to_sender", "in_transit")),
    "lost": (2, ("in_transit", "lost")), "customs": (3, ("customs", "held_customs")),
    "in_transit": (9, ()), "accepted": (5, ()), "not_yet": (3, ()), "unknown": (4, ()),
}
NOT_YET = ("NY", "NOT_YET_RECEIVED_BY_CARRIER")
UNKNOWN = ("UN", "CARRIER_STATUS_NOT_MAPPED")
DST_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
DST_DAY = (2025, 11, 2)  # US clocks fall back at 02:00 local: 01:00-01:59 happens twice


@dataclass(frozen=True)
class Place:
    city: str
    state: str
    postal: str
    zone: str
    lat: float
    lon: float


PLACES = tuple(Place(*p) for p in (
    ("NEW YORK", "NY", "10001", "America/New_York", 40.7506, -73.9972),
    ("BOSTON", "MA", "02118", "America/New_York", 42.3389, -71.0723),
    ("ATLANTA", "GA", "30303", "America/New_York", 33.7527, -84.3915),
    ("MIAMI", "FL", "33126", "America/New_York", 25.7804, -80.3030),
    ("PHILADELPHIA", "PA", "19104", "America/New_York", 39.9597, -75.1968),
    ("LOUISVILLE", "KY", "40209", "America/New_York", 38.1860, -85.7404),
    ("INDIANAPOLIS", "IN", "46241", "America/New_York", 39.7281, -86.2542),
    ("SECAUCUS", "NJ", "07094", "America/New_York", 40.7895, -74.0565),
    ("CHICAGO", "IL", "60607", "America/Chicago", 41.8748, -87.6514),
    ("DALLAS", "TX", "75201", "America/Chicago", 32.7876, -96.7994),
    ("MEMPHIS", "TN", "38118", "America/Chicago", 35.0439, -89.9316),
    ("SARCOXIE", "MO", "64862", "America/Chicago", 37.0776, -94.1258),
    ("KANSAS CITY", "MO", "64120", "America/Chicago", 39.1225, -94.5200),
    ("HOUSTON", "TX", "77032", "America/Chicago", 29.9366, -95.3327),
    ("MINNEAPOLIS", "MN", "55401", "America/Chicago", 44.9850, -93.2700),
    ("DENVER", "CO", "80216", "America/Denver", 39.7836, -104.9700),
    ("SALT LAKE CITY", "UT", "84104", "America/Denver", 40.7522, -111.9460),
    ("ALBUQUERQUE", "NM", "87102", "America/Denver", 35.0820, -106.6480),
    ("BOISE", "ID", "83705", "America/Denver", 43.5870, -116.2170),
    ("PHOENIX", "AZ", "85043", "America/Phoenix", 33.4300, -112.2000),
    ("TUCSON", "AZ", "85706", "America/Phoenix", 32.1300, -110.9300),
    ("MESA", "AZ", "85201", "America/Phoenix", 33.4350, -111.8500),
    ("LOS ANGELES", "CA", "90021", "America/Los_Angeles", 34.0290, -118.2380),
    ("ONTARIO", "CA", "91761", "America/Los_Angeles", 34.0400, -117.5900),
    ("SAN FRANCISCO", "CA", "94124", "America/Los_Angeles", 37.7300, -122.3900),
    ("SEATTLE", "WA", "98108", "America/Los_Angeles", 47.5400, -122.3100),
    ("LAS VEGAS", "NV", "89118", "America/Los_Angeles", 36.0800, -115.2000),
    ("PORTLAND", "OR", "97218", "America/Los_Angeles", 45.5700, -122.6000),
))
_ZONES = {z: ZoneInfo(z) for z in {p.zone for p in PLACES}}
_USPS_WRONG_OFFSET = timezone(timedelta(hours=-7))


# --- The world -------------------------------------------------------------------------------------

@dataclass
class Event:
    """One scan: its true instant, storyline step, rendered JSON and the ground-truth fields."""

    utc: datetime
    kind: str
    place: Place | None
    code: str = ""
    description: str | None = None
    top: tuple[str, str] = NOT_YET  # shipment status once this event has happened
    hidden: bool = False  # happened (moves top-level status) but missing from events[] (top DE, newest OF)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Shipment:
    """A label, its parcel's whole storyline, and the quirks its payloads show."""

    label_carrier: str
    tracking_carrier: str
    tracking_number: str
    created_at: datetime
    scenario: str
    events: list[Event]
    style: str  # "current" (status fields filled, null for empty) or "legacy" (seed shape, "" for empty)
    initial_top: tuple[str, str] = NOT_YET
    oldest_first: bool = False
    duplicate: int | None = None  # index into events of the one sent twice
    ship_date: str | None = None
    estimated_delivery_date: str | None = None
    delivery_text: str | None = None  # actual_delivery_date once delivered
    label_id: str = ""
    label: dict[str, Any] = field(default_factory=dict)

    def visible(self, clock: datetime) -> list[Event]:
        return [e for e in self.events if e.utc <= clock]

    def status_at(self, clock: datetime) -> tuple[str, str]:
        seen = self.visible(clock)
        return seen[-1].top if seen else self.initial_top

    def modified_at(self, clock: datetime) -> datetime:
        return max([self.created_at, *(e.utc for e in self.visible(clock))])


class World:
    """Every label and tracking history of one seed, the sandbox clock, and the ground truth."""

    def __init__(self, shipments: list[Shipment], clock: datetime = DEFAULT_CLOCK) -> None:
        self.shipments = shipments
        self.clock = clock
        self.by_tracking = {s.tracking_number: s for s in shipments}
        self.by_label = {s.label_id: s for s in shipments}

    def labels(self, clock: datetime | None = None) -> list[Shipment]:
        """Shipments whose label exists at ``clock`` (default: the world clock), oldest first."""
        clock = clock or self.clock
        return [s for s in self.shipments if s.created_at <= clock]

    def label_json(self, s: Shipment, clock: datetime | None = None) -> dict[str, Any]:
        """The label object as ``GET /v1/labels`` lists it."""
        status = s.status_at(clock or self.clock)[0]
        return {**s.label, "tracking_status": LABEL_TRACKING_STATUS[status]}

    def tracking_json(self, s: Shipment, clock: datetime | None = None) -> dict[str, Any]:
        """The body of ``GET /v1/tracking`` for ``s`` at ``clock`` (default: the world clock)."""
        clock = clock or self.clock
        seen = s.visible(clock)
        status, detail = seen[-1].top if seen else s.initial_top
        payloads = []
        for i, e in enumerate(s.events):
            if e.utc <= clock and not e.hidden:
                payloads.append(e.payload)
                if i == s.duplicate:
                    payloads.append(dict(e.payload))
        if not s.oldest_first:
            payloads.reverse()
        shown = [e for e in seen if not e.hidden]
        last = shown[-1].payload if shown else None
        body: dict[str, Any] = {
            "tracking_number": s.tracking_number,
            "tracking_url": TRACKING_URLS[_family(s.tracking_carrier)].format(s.tracking_number),
            "status_code": status,
        }
        if s.style == "current":
            body["status_detail_code"] = detail
            body["status_detail_description"] = DETAIL_DESCRIPTIONS[detail]
        delivered = status == "DE" and seen and seen[-1].kind.startswith("delivered")
        body.update({
            "carrier_code": s.tracking_carrier,
            "carrier_id": TRACKING_CARRIER_IDS[s.tracking_carrier],
            "carrier_detail_code": None,
            "status_description": STATUS_DESCRIPTIONS[status],
            "carrier_status_code": last["carrier_status_code"] if last else None,
            "carrier_status_description": last["carrier_status_description"] if last else None,
            "ship_date": s.ship_date if seen else None,
            "estimated_delivery_date": None if delivered else s.estimated_delivery_date,
            "actual_delivery_date": s.delivery_text if delivered else None,
            "exception_description": DETAIL_DESCRIPTIONS[detail] if status == "EX" else None,
            "events": payloads,
        })
        return body

    def expected_events(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Ground truth: each distinct event visible at ``clock``, with its true UTC instant.

        Keys: tracking_number, carrier_code (the tracking reply's), utc (aware), event_code,
        description (None where the payload has ``""`` or null). Duplicates sent twice appear once.
        """
        clock = clock or self.clock
        out: dict[tuple, dict[str, Any]] = {}
        for s in self.labels(clock):
            for e in s.events:
                if e.hidden or e.utc > clock:
                    continue
                row = {"tracking_number": s.tracking_number, "carrier_code": s.tracking_carrier, "utc": e.utc,
                       "event_code": e.code, "description": e.description}
                out.setdefault(tuple(row.values()), row)
        return list(out.values())

    def expected_shipments(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Ground truth per label existing at ``clock``: tracking_number, carrier_code (the label's),
        tracking_carrier_code, label_id, status_code (top-level at ``clock``) and status_detail_code."""
        clock = clock or self.clock
        rows = []
        for s in self.labels(clock):
            status, detail = s.status_at(clock)
            rows.append({"tracking_number": s.tracking_number, "carrier_code": s.label_carrier,
                         "tracking_carrier_code": s.tracking_carrier, "label_id": s.label_id,
                         "status_code": status, "status_detail_code": detail})
        return rows


def _family(carrier: str) -> str:
    return {"stamps_com": "usps", "fedex_walleted": "fedex"}.get(carrier, carrier)


def _iso_z(dt: datetime, *, fraction: str = "") -> str:
    return dt.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + fraction + "Z"


def _naive(dt: datetime) -> str:
    return dt.replace(tzinfo=None, microsecond=0).isoformat()


def _local(dt: datetime, place: Place) -> datetime:
    return dt.astimezone(_ZONES[place.zone])


def build_world(seed: int = 42, scale: float = 1.0, clock: datetime = DEFAULT_CLOCK) -> World:
    """Build the deterministic ShipEngine world: about ``int(2000 * scale)`` labels with histories."""
    count = max(1, int(LABELS_AT_SCALE_1 * scale))
    r = rng(seed, "shipengine", "world")
    dst_count = min(count, max(2, round(36 * scale)))
    dst_slots = set(r.sample(range(count), dst_count))
    used: set[str] = set()
    shipments = [_build_shipment(rng(seed, "shipengine", "shipment", i), i in dst_slots, used)
                 for i in range(count)]
    shipments.sort(key=lambda s: (s.created_at, s.tracking_number))
    label_base, shipment_base = r.randint(100_000_000, 199_999_999), r.randint(200_000_000, 299_999_999)
    for i, s in enumerate(shipments):
        s.label_id = f"se-{label_base + i}"
        s.label = _label(rng(seed, "shipengine", "label", s.tracking_number), s, f"se-{shipment_base + i}")
    _add_duplicates(r, shipments)
    return World(shipments, clock)


def _tracking_number(r: random.Random, carrier: str, used: set[str]) -> str:
    while True:
        number = {
            "usps": lambda: "9400" + fake_id(r, 18), "stamps_com": lambda: "9405" + fake_id(r, 18),
            "ups": lambda: "1Z" + fake_alnum(r, 6) + "03" + fake_id(r, 8), "fedex": lambda: fake_id(r, 12),
            "dhl_express": lambda: fake_id(r, 10), "ontrac": lambda: "D100" + fake_id(r, 11),
        }[carrier]()
        if number not in used:
            used.add(number)
            return number


def _storyline(r: random.Random, scenario: str, family: str, dst: bool) -> list[str]:
    if scenario == "not_yet":
        return []
    if scenario == "unknown":
        return r.choice(([], [], ["created", "unmapped"], ["created", "picked_up", "unmapped"]))
    if scenario == "accepted":
        return ["created", "awaiting_dropoff"]
    tail = list(SCENARIOS[scenario][1])
    if scenario in ("delivered", "delayed"):
        tail[-1] = weighted(r, {"delivered": 6, "delivered_neighbour": 1, "delivered_safe_place": 2})
    n = r.randint(6, 10) if dst else r.randint(2, 8) if scenario == "in_transit" else \
        min(12, max(2, round(r.gauss(7.2, 2.4))))
    middle_len = n - 2 - len(tail)
    if middle_len < 0:
        return (["created", "picked_up"] + tail)[-n:]
    middle = [("hub_in", "hub_out", "in_transit")[j % 3] if r.random() < 0.8 else "in_transit"
              for j in range(middle_len)]
    if family == "usps" and middle_len >= 2 and not dst and r.random() < 0.4:
        middle[r.randrange(1, middle_len)] = "nt"  # the unconverted midnight scan of the seed
    return ["created", "picked_up", *middle, *tail]


_GAPS_H = {"picked_up": (2, 30), "out_for_delivery": (6, 16), "delivered": (1, 9), "delivered_neighbour": (1, 9),
           "delivered_safe_place": (1, 9), "attempted": (1, 9), "pickup_point": (2, 10),
           "return_to_sender": (20, 50), "lost": (72, 240), "held_customs": (4, 30), "delay": (10, 40),
           "awaiting_dropoff": (0.2, 4)}


def _gap(r: random.Random, kind: str) -> timedelta:
    low, high = _GAPS_H.get(kind, (3, 22))
    return timedelta(minutes=round(r.uniform(low, high) * 60))


def _build_shipment(r: random.Random, dst: bool, used: set[str]) -> Shipment:
    if dst:
        carrier = r.choice(("ups", "ups", "usps", "stamps_com", "dhl_express"))
        scenario = "delivered"
    else:
        carrier = weighted(r, LABEL_CARRIER_WEIGHTS)
        scenario = weighted(r, {k: w for k, (w, _) in SCENARIOS.items()})
    family = _family(carrier)
    tracking_carrier = "usps" if carrier == "stamps_com" else \
        "fedex_walleted" if carrier == "fedex" and r.random() < 0.1 else carrier
    kinds = _storyline(r, scenario, family, dst)
    late = not dst and bool(kinds) and r.random() < 0.045
    origin, destination = r.choice(PLACES), r.choice(PLACES)
    places = [_place_for(r, k, origin, destination) for k in kinds]
    if dst:
        created_at, times = _dst_times(r, kinds, places)
    else:
        start = datetime(2025, 12, 1, tzinfo=UTC) if late else LABELS_START
        created_at = instant_between(r, start, LABELS_END).replace(microsecond=r.randrange(1000) * 1000)
        times, t = [], created_at + timedelta(minutes=r.randint(10, 480))
        for k in kinds:
            t = t + _gap(r, k) if times else t
            times.append(t.replace(second=0, microsecond=0))
        if late and times[-1] <= DEFAULT_CLOCK:
            times[-1] = DEFAULT_CLOCK + timedelta(minutes=r.randint(60, 12 * 24 * 60))
    s = Shipment(label_carrier=carrier, tracking_carrier=tracking_carrier,
                 tracking_number=_tracking_number(r, carrier, used), created_at=created_at, scenario=scenario,
                 events=[], style="current" if r.random() < 0.7 else "legacy",
                 initial_top=UNKNOWN if scenario == "unknown" else NOT_YET, oldest_first=r.random() < 0.04)
    _render_events(r, s, family, kinds, places, times, dst)
    _tracking_dates(r, s, family)
    return s


def _place_for(r: random.Random, kind: str, origin: Place, destination: Place) -> Place | None:
    if kind == "nt":
        return None
    if kind in ("created", "awaiting_dropoff", "picked_up"):
        return origin
    if kind in ("depot", "out_for_delivery", "attempted", "pickup_point", "return_to_sender") or \
            kind.startswith("delivered"):
        return destination
    return r.choice(PLACES)


def _dst_times(r: random.Random, kinds: list[str], places: list[Place | None]) -> tuple[datetime, list[datetime]]:
    """Put steps 2..4 inside the repeated hour of 2025-11-02 (first pass, then second pass)."""
    zone = r.choice(DST_ZONES)
    hub = r.choice([p for p in PLACES if p.zone == zone])
    minutes = sorted(r.sample(range(60), 3))
    anchors: dict[int, datetime] = {}
    for offset, (minute, fold) in enumerate(zip(minutes, (0, 1, 1))):
        index = 2 + offset
        if index < len(kinds) and kinds[index] in ("hub_in", "hub_out", "in_transit"):
            places[index] = hub
            anchors[index] = datetime(*DST_DAY, 1, minute, tzinfo=_ZONES[zone], fold=fold).astimezone(UTC)
    times: list[datetime | None] = [anchors.get(i) for i in range(len(kinds))]
    for i in range(3, len(kinds)):
        if times[i] is None:
            times[i] = times[i - 1] + _gap(r, kinds[i])
    for i in (1, 0):
        times[i] = times[i + 1] - _gap(r, kinds[i + 1])
    created_at = times[0] - timedelta(minutes=r.randint(10, 480), milliseconds=r.randrange(1000))
    return created_at, [t for t in times if t is not None]


def _render_events(r: random.Random, s: Shipment, family: str, kinds: list[str], places: list[Place | None],
                   times: list[datetime], dst: bool) -> None:
    usps_mode = weighted(r, {"naive": 4, "false_z": 2.5, "offset": 3.5}) if family == "usps" else ""
    if dst and usps_mode == "offset":
        usps_mode = "naive"
    fedex_fraction = r.choice(("", "", ".000", "tenths"))
    numeric = family == "usps" and r.random() < 0.06  # carrier_status_code and postal_code as JSON numbers
    no_coords = r.random() < 0.2
    empty = "" if s.style == "legacy" else None
    top = s.initial_top
    for kind, place, t in zip(kinds, places, times):
        code, text = CARRIER_EVENTS[family][kind]
        status, detail = KINDS[kind]
        if kind == "nt":
            t = t.replace(hour=0, minute=0, second=0)  # occurred_at == carrier_occurred_at, 00:00:00
        if family == "fedex" and fedex_fraction == "tenths":
            t = t.replace(microsecond=r.randrange(1, 10) * 100_000)
        if not (top[1] == "RETURN_TO_SENDER" and status == "IT"):
            top = (status, detail)
        occurred, carrier_occurred = _event_times(family, usps_mode, kind, t, place, fedex_fraction)
        description: str | None = text
        if r.random() < 0.02:
            description = empty  # missing text: "" on older payloads, null on current ones
        event_code: Any = code
        if family == "ups" and r.random() < 0.02:
            event_code = empty  # code only in carrier_status_code
        payload: dict[str, Any] = {
            "occurred_at": occurred, "carrier_occurred_at": carrier_occurred, "description": description,
            "city_locality": place.city if place else empty, "state_province": place.state if place else empty,
            "postal_code": (int(place.postal) if numeric else place.postal) if place else empty,
            "country_code": "US" if place and s.style == "current" else empty,
            "company_name": empty,
            "signer": fake_name(r) if kind.startswith("delivered") and r.random() < 0.3 else empty,
            "event_code": event_code, "carrier_detail_code": None,
        }
        if s.style == "current":
            payload.update({"status_code": status, "status_detail_code": detail,
                            "status_description": STATUS_DESCRIPTIONS[status],
                            "status_detail_description": DETAIL_DESCRIPTIONS[detail]})
        else:
            blank = "" if family == "ups" else None
            payload.update({"status_code": blank, "status_description": blank})
        payload.update({
            "carrier_status_code": int(code) if numeric and code.isdigit() else code,
            "carrier_status_description": text,
            "latitude": None if no_coords or not place else round(place.lat + r.uniform(-0.02, 0.02), 4),
            "longitude": None if no_coords or not place else round(place.lon + r.uniform(-0.02, 0.02), 4),
        })
        s.events.append(Event(utc=t, kind=kind, place=place, code=code, description=description or None,
                              top=top, payload=payload))
    if s.scenario == "unknown":
        for e in s.events:
            e.top = UNKNOWN
    if s.events and s.events[-1].kind.startswith("delivered") and r.random() < 0.03:
        s.events[-1].hidden = True  # top-level DE while the newest event shown is OF


def _event_times(family: str, usps_mode: str, kind: str, t: datetime, place: Place | None,
                 fedex_fraction: str) -> tuple[str, str | None]:
    """``occurred_at`` and ``carrier_occurred_at`` in the carrier's encoding (providers.md 6.1)."""
    if kind == "nt" or place is None:
        return _iso_z(t), _naive(t)
    local = _naive(_local(t, place))
    if family == "usps":
        if usps_mode == "offset":  # the offset-bearing value is right; occurred_at is 7 h too late
            return _iso_z(t + timedelta(hours=7)), t.astimezone(_USPS_WRONG_OFFSET).isoformat()
        return _iso_z(t), local + ("Z" if usps_mode == "false_z" else "")
    if family == "fedex":
        fraction = f".{t.microsecond // 100_000}" if fedex_fraction == "tenths" else fedex_fraction
        text = _iso_z(t, fraction=fraction)
        return text, text
    if family == "ontrac":
        return _iso_z(t), None
    return _iso_z(t), local  # ups, dhl_express: naive local time


def _tracking_dates(r: random.Random, s: Shipment, family: str) -> None:
    created_local = s.created_at.astimezone(_ZONES["America/New_York"])
    if family == "fedex":
        s.ship_date = _naive(created_local + timedelta(hours=r.randint(1, 8), seconds=r.randrange(3600)))
    elif r.random() < 0.6:
        s.ship_date = f"{created_local.date().isoformat()}T00:00:00Z"
    if s.style == "current":
        s.estimated_delivery_date = f"{(s.created_at + timedelta(days=r.randint(3, 7))).date()}T00:00:00Z"
    final = s.events[-1] if s.events else None
    if final and final.kind.startswith("delivered"):
        if family == "fedex":  # naive and hours away from the delivered scan
            s.delivery_text = _naive(_local(final.utc, final.place) - timedelta(hours=r.randint(1, 6),
                                                                                seconds=r.randrange(3600)))
        elif r.random() < 0.7:
            s.delivery_text = _iso_z(final.utc)


def _label(r: random.Random, s: Shipment, shipment_id: str) -> dict[str, Any]:
    first = next((e.place for e in s.events if e.place), None) or r.choice(PLACES)
    last = next((e.place for e in reversed(s.events) if e.place), None) or r.choice(PLACES)
    download = f"https://api.shipengine.com/v1/downloads/10/{r.getrandbits(88):022x}/{s.label_id}"
    return {
        "label_id": s.label_id, "status": "completed", "shipment_id": shipment_id,
        "ship_date": f"{s.created_at.date().isoformat()}T00:00:00Z",
        "created_at": _iso_z(s.created_at, fraction=f".{s.created_at.microsecond // 1000:03d}"),
        "shipment_cost": {"currency": "usd", "amount": round(r.uniform(4.5, 48.0), 2)},
        "insurance_cost": {"currency": "usd", "amount": 0.0},
        "tracking_number": s.tracking_number, "is_return_label": False, "rma_number": None,
        "is_international": False, "batch_id": "", "carrier_id": LABEL_CARRIER_IDS[s.label_carrier],
        "service_code": r.choice(SERVICES[s.label_carrier]), "package_code": "package", "voided": False,
        "voided_at": None, "label_format": "pdf", "display_scheme": "label", "label_layout": "4x6",
        "trackable": True, "label_image_id": None, "carrier_code": s.label_carrier,
        "label_download": {"pdf": download + ".pdf", "png": download + ".png", "zpl": download + ".zpl",
                           "href": download + ".pdf"},
        "form_download": None, "insurance_claim": None,
        "packages": [{"package_code": "package", "tracking_number": s.tracking_number,
                      "weight": {"value": round(r.uniform(2, 160), 1), "unit": "ounce"}}],
        "ship_to": _address(r, last, residential=True),
        "ship_from": _address(r, first, residential=False),
    }


def _address(r: random.Random, place: Place, *, residential: bool) -> dict[str, Any]:
    return {"name": fake_name(r), "phone": fake_phone(r), "company_name": None if residential else "SANDBOX GOODS",
            "address_line1": f"{r.randint(1, 9999)} {r.choice(('MAIN', 'OAK', 'PINE', 'MAPLE', 'CEDAR'))} ST",
            "address_line2": None, "city_locality": place.city, "state_province": place.state,
            "postal_code": place.postal, "country_code": "US",
            "address_residential_indicator": "yes" if residential else "no"}


def _add_duplicates(r: random.Random, shipments: list[Shipment]) -> None:
    candidates = [s for s in shipments if len(s.events) >= 3]
    for s in r.sample(candidates, min(len(candidates), max(3, len(shipments) // 100))):
        s.duplicate = r.randrange(len(s.events) - 1)


# --- HTTP -----------------------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, error_type: str, error_code: str, message: str, *,
                   headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A ShipEngine error body: ``{request_id, errors: [{error_source, error_type, error_code, message}]}``."""
    error = {"error_source": "shipengine", "error_type": error_type, "error_code": error_code, "message": message}
    error.update(extra)
    return _json({"request_id": str(uuid.uuid4()), "errors": [error]}, status, headers)


class _BadParam(Exception):
    def __init__(self, field_name: str, message: str, code: str = "invalid_field_value") -> None:
        super().__init__(message)
        self.field_name, self.code = field_name, code


class RateLimiter:
    """Fixed one-minute windows per API key, as the live API counts requests per account."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> float | None:
        """Count one request; return None if allowed, else the seconds until the window reopens."""
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= 60:
                start, used = now, 0
            if used >= self.per_minute:
                return max(1.0, math.ceil(60 - (now - start)))
            self._windows[key] = (start, used + 1)
            return None

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


def _parse_time(params: Any, name: str) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _BadParam(name, f"{name} must be an ISO 8601 date-time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_int(params: Any, name: str, default: int, low: int, high: int | None = None) -> int:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _BadParam(name, f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _BadParam(name, f"{name} must be {limit}, got {number}")
    return number


def _choice(params: Any, name: str, allowed: Iterable[str], default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise _BadParam(name, f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def create_app(settings: SandboxSettings) -> Starlette:
    """The ShipEngine sandbox app; core mounts it at ``/shipengine`` (routes below are ``/v1/...``).

    Knobs in ``settings.extra``: ``shipengine_api_keys`` (accepted ``API-Key`` values),
    ``shipengine_rate_per_minute`` (per key, default 6000), ``shipengine_clock`` (ISO start clock).
    ``app.state.world`` is the :class:`World`; ``app.state.reset`` clears the rate-limit counters.
    """
    extra = settings.extra
    world = build_world(settings.seed, settings.scale)
    if extra.get("shipengine_clock"):
        world.clock = _parse_time(extra, "shipengine_clock") or DEFAULT_CLOCK
    keys = frozenset(extra.get("shipengine_api_keys", DEFAULT_API_KEYS))
    limiter = RateLimiter(int(extra.get("shipengine_rate_per_minute", DEFAULT_RATE_PER_MINUTE)))

    def guard(request: Request) -> Response | None:
        key = request.headers.get("api-key")
        if not key or key not in keys:
            return error_response(401, "security", "unauthorized", AUTH_MESSAGE)
        wait = limiter.admit(key)
        if wait is not None:
            return error_response(429, "system", "rate_limit_exceeded", RATE_MESSAGE,
                                  headers={"Retry-After": str(int(wait))})
        return None

    def bad(exc: _BadParam) -> Response:
        return error_response(400, "validation", exc.code, str(exc), field_name=exc.field_name)

    async def list_labels(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            page = _parse_int(q, "page", 1, 1)
            size = _parse_int(q, "page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
            start, end = _parse_time(q, "created_at_start"), _parse_time(q, "created_at_end")
            sort_by = _choice(q, "sort_by", ("created_at", "modified_at"), "created_at")
            sort_dir = _choice(q, "sort_dir", ("asc", "desc"), "desc")
        except _BadParam as exc:
            return bad(exc)
        clock = world.clock
        items = [s for s in world.labels(clock) if (start is None or s.created_at >= start)
                 and (end is None or s.created_at <= end)]
        for name, get in (("tracking_number", lambda s: s.tracking_number), ("service_code",
                          lambda s: s.label["service_code"]), ("carrier_id", lambda s: s.label["carrier_id"]),
                          ("label_status", lambda s: "completed"), ("shipment_id", lambda s: s.label["shipment_id"])):
            if q.get(name):
                items = [s for s in items if get(s) == q[name]]
        sort_key = (lambda s: (s.created_at, s.label_id)) if sort_by == "created_at" else \
            (lambda s: (s.modified_at(clock), s.label_id))
        items.sort(key=sort_key, reverse=sort_dir == "desc")
        total = len(items)
        pages = math.ceil(total / size)
        chunk = items[(page - 1) * size: page * size]

        def link(n: int) -> dict[str, str]:
            return {"href": str(request.url.include_query_params(page=n, page_size=size))}

        return _json({
            "labels": [world.label_json(s, clock) for s in chunk], "total": total, "page": page, "pages": pages,
            "links": {"first": link(1), "last": link(max(pages, 1)),
                      "prev": link(page - 1) if 1 < page <= pages + 1 else {},
                      "next": link(page + 1) if page < pages else {}},
        })

    async def track(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        carrier, number = request.query_params.get("carrier_code"), request.query_params.get("tracking_number")
        for name, value in (("carrier_code", carrier), ("tracking_number", number)):
            if not value:
                return bad(_BadParam(name, f"{name} is required", "field_value_required"))
        s = world.by_tracking.get(number or "")
        if s is None or s.created_at > world.clock:
            return error_response(404, "validation", "not_found", f"Tracking number '{number}' was not found.")
        if carrier not in (s.label_carrier, s.tracking_carrier):
            return error_response(400, "validation", "invalid_identifier",
                                  f"carrier_code '{carrier}' is not valid for tracking number '{number}'.",
                                  field_name="carrier_code")
        return _json(world.tracking_json(s))

    async def track_label(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        label_id = request.path_params["label_id"]
        s = world.by_label.get(label_id)
        if s is None or s.created_at > world.clock:
            return error_response(404, "validation", "not_found", f"Label '{label_id}' was not found.")
        return _json(world.tracking_json(s))

    async def subscribe(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        for name in ("carrier_code", "tracking_number"):
            if not request.query_params.get(name):
                return bad(_BadParam(name, f"{name} is required", "field_value_required"))
        return Response(status_code=204)

    async def get_clock(request: Request) -> Response:
        return _json({"now": _iso_z(world.clock)})

    async def set_clock(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body() or b"{}")
            now = _parse_time(data, "now") if isinstance(data, dict) else None
        except (orjson.JSONDecodeError, _BadParam) as exc:
            return _json({"error": str(exc)}, 400)
        if now is None:
            return _json({"error": 'body must be {"now": "<ISO 8601 date-time>"}'}, 400)
        world.clock = now.astimezone(UTC)
        return _json({"now": _iso_z(world.clock)})

    app = Starlette(routes=[
        Route("/v1/labels", list_labels, methods=["GET"]),
        Route("/v1/labels/{label_id}/track", track_label, methods=["GET"]),
        Route("/v1/tracking", track, methods=["GET"]),
        Route("/v1/tracking/start", subscribe, methods=["POST"]),
        Route("/v1/tracking/stop", subscribe, methods=["POST"]),
        Route("/_clock", get_clock, methods=["GET"]),
        Route("/_clock", set_clock, methods=["POST"]),
    ])
    app.state.world = world
    app.state.limiter = limiter
    app.state.reset = limiter.reset
    return app
