"""Draws the ShipEngine sandbox's world from a seed: each label's storyline of scans, and the payloads
(scan JSON in each carrier's time encoding, tracking dates, the label) rendered from it with the provider
tables in ``facts.py``. Its ground truth is the storyline itself (``world.py``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from shipetl.sandbox.seed import fake_alnum, fake_id, fake_name, fake_phone, instant_between, rng, weighted

from .facts import (
    CARRIER_EVENTS,
    DETAIL_DESCRIPTIONS,
    KINDS,
    LABEL_CARRIER_IDS,
    LABEL_CARRIER_WEIGHTS,
    PLACES,
    SERVICES,
    STATUS_DESCRIPTIONS,
    Place,
)
from .world import DEFAULT_CLOCK, NOT_YET, UNKNOWN, Event, Shipment, World, family_of

LABELS_START = datetime(2025, 9, 1, tzinfo=UTC)
LABELS_END = datetime(2025, 12, 15, tzinfo=UTC)
LABELS_AT_SCALE_1 = 2000

# Scenario -> (weight, steps after the transit middle). "delivered" picks one of three delivered steps.
SCENARIOS = {
    "delivered": (55, ("out_for_delivery", "delivered")), "delayed": (5, ("delay", "in_transit", "out_for_delivery",
                                                                           "delivered")),
    "attempted": (5, ("out_for_delivery", "attempted")), "pickup_point": (5, ("depot", "pickup_point")),
    "return": (4, ("out_for_delivery", "attempted", "return_to_sender", "in_transit")),
    "lost": (2, ("in_transit", "lost")), "customs": (3, ("customs", "held_customs")),
    "in_transit": (9, ()), "accepted": (5, ()), "not_yet": (3, ()), "unknown": (4, ()),
}
DST_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
DST_DAY = (2025, 11, 2)  # US clocks fall back at 02:00 local: 01:00-01:59 happens twice

_ZONES = {z: ZoneInfo(z) for z in {p.zone for p in PLACES}}
_USPS_WRONG_OFFSET = timezone(timedelta(hours=-7))


def iso_z(dt: datetime, *, fraction: str = "") -> str:
    """``dt`` in UTC as ShipEngine writes it: whole seconds, then ``fraction`` (``.000``, ``.3``), then ``Z``."""
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
    family = family_of(carrier)
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
        return iso_z(t), _naive(t)
    local = _naive(_local(t, place))
    if family == "usps":
        if usps_mode == "offset":  # the offset-bearing value is right; occurred_at is 7 h too late
            return iso_z(t + timedelta(hours=7)), t.astimezone(_USPS_WRONG_OFFSET).isoformat()
        return iso_z(t), local + ("Z" if usps_mode == "false_z" else "")
    if family == "fedex":
        fraction = f".{t.microsecond // 100_000}" if fedex_fraction == "tenths" else fedex_fraction
        text = iso_z(t, fraction=fraction)
        return text, text
    if family == "ontrac":
        return iso_z(t), None
    return iso_z(t), local  # ups, dhl_express: naive local time


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
            s.delivery_text = iso_z(final.utc)


def _label(r: random.Random, s: Shipment, shipment_id: str) -> dict[str, Any]:
    first = next((e.place for e in s.events if e.place), None) or r.choice(PLACES)
    last = next((e.place for e in reversed(s.events) if e.place), None) or r.choice(PLACES)
    download = f"https://api.shipengine.com/v1/downloads/10/{r.getrandbits(88):022x}/{s.label_id}"
    return {
        "label_id": s.label_id, "status": "completed", "shipment_id": shipment_id,
        "ship_date": f"{s.created_at.date().isoformat()}T00:00:00Z",
        "created_at": iso_z(s.created_at, fraction=f".{s.created_at.microsecond // 1000:03d}"),
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
