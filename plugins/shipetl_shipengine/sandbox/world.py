"""The ShipEngine sandbox's seeded world: labels, each parcel's tracking storyline, and the ground truth.

Ground truth (``World.expected_events`` / ``expected_shipments``) is computed from the same storyline the
payloads are rendered from, so end-to-end tests can compare what the pipeline loaded with what is true.
``generate.py`` draws the storylines and renders their payloads from the provider tables in ``facts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .facts import (
    DETAIL_DESCRIPTIONS,
    LABEL_TRACKING_STATUS,
    STATUS_DESCRIPTIONS,
    TRACKING_CARRIER_IDS,
    TRACKING_URLS,
    Place,
)

DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)
NOT_YET = ("NY", "NOT_YET_RECEIVED_BY_CARRIER")
UNKNOWN = ("UN", "CARRIER_STATUS_NOT_MAPPED")


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
            "tracking_url": TRACKING_URLS[family_of(s.tracking_carrier)].format(s.tracking_number),
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


def family_of(carrier: str) -> str:
    """The carrier whose scan codes and time encoding a label carrier's parcels show (Stamps.com's are USPS's)."""
    return {"stamps_com": "usps", "fedex_walleted": "fedex"}.get(carrier, carrier)
