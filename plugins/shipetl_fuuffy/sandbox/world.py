"""The Fuuffy sandbox's seeded world: orders, their parcels' SF Express / Kerry scans, and the ground truth.

Payloads as providers.md 4 and 6.4 describe the live API: ``data`` and ``tracking_msg_list`` now and then
sent as JSON strings, scans newest-first or oldest-first, naive Hong Kong times. Ground truth
(``World.expected_*``) comes from the storyline, not from the payloads, so tests compare what the pipeline
loaded against what is true.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from shipetl.sandbox.seed import fake_id, fake_name, instant_between, rng, weighted

# --- Provider facts and storyline tables -----------------------------------------------------------

HK = ZoneInfo("Asia/Hong_Kong")
DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)
ORDERS_START = datetime(2025, 10, 15, tzinfo=UTC)
ORDERS_END = datetime(2025, 12, 18, tzinfo=UTC)
ORDERS_AT_SCALE_1 = 300
FIRST_ORDER_ID = 3550000
FOREIGN_ORDER_IDS = ("3549001", "3549002")  # another member's orders: 403 on tracking
ORDER_STATUSES = ("DRAFT", "PENDING_CONFIRM", "PENDING_PROCESSING", "PROCESSING", "READY_TO_SHIP", "PENDING_PICKUP",
                  "PICKUP_COMPLETED", "IN_TRANSIT", "DELIVERED", "COMPLETED", "CANCELLED")

COURIERS = {"Sf Express": 85, "Kerry Express": 10, "Hongkong Post": 5}
CARRIER_CODES = {"Sf Express": "sf_express", "Kerry Express": "kerry_express", "Hongkong Post": "hongkong_post"}
SERVICES = {"Sf Express": ("SF Standard Express", "SF Economy Express"), "Kerry Express": ("Kerry Standard",),
            "Hongkong Post": ("Local Parcel",)}
DESTINATIONS = (("Hong Kong", "HK"), ("HONG KONG", "HK"), ("Macau", "MO"), ("China", "CN"), ("Taiwan", "TW"),
                ("Singapore", "SG"), ("Malaysia", "MY"))
HK_PLACES = ("香港", "葵涌", "觀塘", "沙田", "荃灣", "九龍灣", "將軍澳")
CN_PLACES = ("深圳市", "广州市", "东莞市")
DISTRICTS = ("Kwun Tong", "Sha Tin", "Tsuen Wan", "Mong Kok", "Central", "Causeway Bay")

# Storyline step -> (SF opCode, message, canonical status of the scan). ``{p}`` is the place.
SF_STEPS: dict[str, tuple[str, str, str]] = {
    "collected": ("50", "顺丰速运 已收取快件", "in_transit"),
    "collected_54": ("54", "顺丰速运 已收取快件（上门收件）", "in_transit"),
    "arrived": ("30", "快件到达 【{p}集散中心】", "in_transit"),
    "departed": ("31", "快件离开 【{p}集散中心】,正发往下一站", "in_transit"),
    "transport": ("36", "快件在【{p}中转场】完成分拣,准备发往下一站", "in_transit"),
    "unconfirmed": ("607", "快件已到达海关监管区", "unknown"),
    "outlet": ("130", "快件到达 【{p}营业点】", "in_transit"),
    "out_for_delivery": ("44", "快件交给陈先生，正在派送途中（联系电话：5550 1234）", "out_for_delivery"),
    "handed": ("204", "快件已交给派件员,正在派送途中", "out_for_delivery"),
    "failed": ("70", "派送不成功，已与收件人约定新派送时间", "failed_attempt"),
    "delivered": ("80", "已签收,感谢使用顺丰,期待再次为您服务", "delivered"),
    "locker": ("80", "快件已放至顺丰自助柜，请凭取件码取件", "available_for_pickup"),
    "note": ("8000", "快件已签收，如有疑问请致电客服", "delivered"),
    "returned": ("631", "快件已退回寄件人", "returned"),
}
# Kerry and Hongkong Post relay their own codes, which no table maps: their scans stay ``unknown``, except
# the reply's newest scan, which takes the status of the Chinese order_status text (Fuuffy's "current
# tracking status") unless that text says pending or info_received; the parcel's status comes from that text.
OTHER_STEPS: dict[str, tuple[str, str, str]] = {
    "collected": ("PU", "Shipment picked up 已收件", "unknown"),
    "arrived": ("AR", "Arrived at hub {p}", "unknown"),
    "departed": ("DP", "Departed hub {p}", "unknown"),
    "transport": ("IT", "In transit 運送中", "unknown"),
    "outlet": ("AD", "Arrived at delivery centre", "unknown"),
    "out_for_delivery": ("OD", "Out for delivery 派送中", "unknown"),
    "delivered": ("DL", "Delivered 已簽收", "unknown"),
}
OTHER_CODES = frozenset(code for code, _, _ in OTHER_STEPS.values())
# Scenario -> (weight, steps, order code at the end, tracking order_status text at the end).
SCENARIOS: dict[str, tuple[int, tuple[str, ...], str, str]] = {
    "draft": (3, (), "DRAFT", "草稿"),
    "pending": (6, (), "pending_processing", "待處理"),
    "cancelled": (3, (), "CANCELLED", "已取消"),
    "label": (8, (), "READY_TO_SHIP", "列印及安排取件"),
    "collected": (6, ("collected",), "PICKUP_COMPLETED", "列印及安排取件"),
    "in_transit": (14, ("collected", "arrived", "departed", "transport", "arrived"), "IN_TRANSIT", "運送中"),
    "out_for_delivery": (8, ("collected", "arrived", "departed", "outlet", "out_for_delivery"), "IN_TRANSIT", "派送中"),
    "delivered": (38, ("collected", "arrived", "departed", "transport", "outlet", "out_for_delivery", "delivered",
                       "note"), "DELIVERED", "已簽收"),
    "locker": (5, ("collected", "arrived", "departed", "outlet", "handed", "locker"), "IN_TRANSIT", "待取件"),
    "failed": (5, ("collected", "arrived", "departed", "outlet", "out_for_delivery", "failed"), "IN_TRANSIT", "派送異常"),
    "returned": (4, ("collected", "arrived", "departed", "outlet", "out_for_delivery", "failed", "returned"),
                 "COMPLETED", "已退回"),
}
NO_PARCEL = ("draft", "pending", "cancelled")
NOT_OTHER = ("locker", "failed", "returned")  # storylines only SF tells apart
# What each order_status text the sandbox sends means (the truth for couriers whose codes nobody maps).
# Text statuses that never speak for a scan: beside a courier scan they lag behind it (seed 001).
TEXT_BEHIND_SCANS = ("pending", "info_received")
TEXT_STATUS = {"草稿": "pending", "待處理": "pending", "已取消": "exception", "列印及安排取件": "info_received",
               "運送中": "in_transit", "派送中": "out_for_delivery", "已簽收": "delivered", "待取件": "available_for_pickup",
               "派送異常": "out_for_delivery", "已退回": "returned"}
FINAL_TRUTH = ("delivered", "returned")


@dataclass
class Scan:
    """One scan: its true instant, rendered fields and its true canonical status."""

    utc: datetime
    step: str
    code: str
    message: str
    location: str
    status: str
    seq: int  # position in the storyline: breaks same-second ties, as SF's code sequence does

    def payload(self) -> dict[str, str]:
        return {"code": self.code, "location": self.location, "date": hk_text(self.utc), "message": self.message}


@dataclass
class Parcel:
    tracking_number: str
    scans: list[Scan]
    oldest_first: bool
    data_as_string: bool
    list_as_string: bool

    def visible(self, clock: datetime) -> list[Scan]:
        return [s for s in self.scans if s.utc <= clock]


@dataclass
class Order:
    """An order, its parcels' storylines and how its payloads are spelled."""

    order_id: str
    created: datetime
    scenario: str
    courier: str
    service: str
    destination: tuple[str, str]
    export_country: str
    parcels: list[Parcel]
    receiver: dict[str, str]
    amounts: dict[str, str]
    time_style: str  # "offset", "z" or "naive"
    lower_case: bool
    labelled: datetime  # when the tracking number appears

    @property
    def carrier_code(self) -> str:
        return CARRIER_CODES[self.courier]

    def stage(self, clock: datetime) -> tuple[str, str]:
        """(order code, tracking order_status text) at ``clock``."""
        _, steps, code, text = SCENARIOS[self.scenario]
        if self.scenario in NO_PARCEL:
            return code, text
        seen = self.parcels[0].visible(clock)
        if clock < self.labelled:
            return "PROCESSING", "待處理"
        if len(seen) == len(self.parcels[0].scans):
            return code, text
        if not seen:
            return "READY_TO_SHIP", "列印及安排取件"
        last = max(seen, key=lambda s: (s.utc, s.seq)).step
        if last in ("out_for_delivery", "handed"):
            return "IN_TRANSIT", "派送中"
        return "IN_TRANSIT", "運送中"

    def numbers(self, clock: datetime) -> list[str]:
        return [] if clock < self.labelled or not self.parcels else [p.tracking_number for p in self.parcels]


def hk_text(utc: datetime) -> str:
    """A UTC instant as Fuuffy writes it: naive Hong Kong wall time."""
    return utc.astimezone(HK).strftime("%Y-%m-%d %H:%M:%S")


def _order_time(utc: datetime, style: str) -> str:
    if style == "z":
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "offset":
        return utc.astimezone(HK).isoformat()
    return hk_text(utc)


class World:
    """Every order of one seed, the sandbox clock, and the ground truth."""

    def __init__(self, orders: list[Order], clock: datetime = DEFAULT_CLOCK) -> None:
        self.orders = orders
        self.clock = clock
        self.by_id = {o.order_id: o for o in orders}
        self.by_tracking = {p.tracking_number: (o, p) for o in orders for p in o.parcels}

    def visible_orders(self, clock: datetime | None = None) -> list[Order]:
        clock = clock or self.clock
        return [o for o in self.orders if o.created <= clock]

    def order_json(self, o: Order, clock: datetime | None = None) -> dict[str, Any]:
        """One element of ``data.order_list`` (field names beyond the seed are this sandbox's choice)."""
        clock = clock or self.clock
        code, _ = o.stage(clock)
        seen = [s for p in o.parcels for s in p.visible(clock)]
        updated = max([o.created, *(s.utc for s in seen)] + ([o.labelled] if o.labelled <= clock else []))
        return {
            "order_id": o.order_id, "order_status": code.lower() if o.lower_case else code,
            "create_time": _order_time(o.created, o.time_style), "update_time": _order_time(updated, o.time_style),
            "shipping_provider": o.courier, "service_type": o.service, "tracking_numbers": o.numbers(clock),
            "export_country": o.export_country, "destination_country": o.destination[0], **o.amounts,
            "receiver_name": o.receiver["name"], "receiver_phone": o.receiver["phone"],
            "receiver_address": o.receiver["address"], "remark": "易碎品 fragile" if int(o.order_id) % 7 == 0 else "",
        }

    def tracking_json(self, o: Order, p: Parcel | None, clock: datetime | None = None) -> dict[str, Any]:
        """The body of ``GET /v1/tracking/get``: for parcel ``p``, or for an order with none yet."""
        clock = clock or self.clock
        _, text = o.stage(clock)
        labelled = p is not None and clock >= o.labelled
        scans = [s.payload() for s in p.visible(clock)] if labelled else []
        if p is not None and not p.oldest_first:
            scans.reverse()
        msgs: Any = orjson.dumps(scans).decode() if p is not None and p.list_as_string else scans
        data: Any = {
            "tracking_number": p.tracking_number if labelled else "", "order_id": o.order_id, "order_status": text,
            "export_country": o.export_country, "destination_country": o.destination[0],
            "shipping_provider": o.courier, "courier_name": o.courier, "tracking_msg_list": msgs, "message": "OK",
        }
        if p is not None and p.data_as_string:
            data = orjson.dumps(data).decode()
        return {"data": data}

    # --- ground truth ---------------------------------------------------------------------------

    def expected_orders(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Per order visible at ``clock``: order_id, status_raw (as sent), created_at (UTC), destination (ISO)."""
        clock = clock or self.clock
        out = []
        for o in self.visible_orders(clock):
            body = self.order_json(o, clock)
            out.append({"order_id": o.order_id, "status_raw": body["order_status"], "created_at": o.created,
                        "destination_country": o.destination[1]})
        return out

    def expected_shipments(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Per parcel with a tracking number at ``clock``: tracking_number, order_id, carrier_code, status, is_final."""
        clock = clock or self.clock
        out = []
        for o in self.visible_orders(clock):
            if not o.numbers(clock):
                continue
            _, text = o.stage(clock)
            for p in o.parcels:
                setting = [s for s in p.visible(clock) if s.status != "unknown" and s.code != "8000"]
                status = TEXT_STATUS[text]
                if setting:
                    status = max(setting, key=lambda s: (s.utc, s.seq)).status
                out.append({"tracking_number": p.tracking_number, "order_id": o.order_id,
                            "carrier_code": o.carrier_code, "status": status, "is_final": status in FINAL_TRUTH,
                            "status_raw": text})
        return out

    def expected_events(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Every scan visible at ``clock``: tracking_number, carrier_code, utc, local (as sent), code, message, status.

        A Kerry / Hongkong Post scan (a code no table maps) is ``unknown``, unless it is its parcel's newest
        visible scan: then it has the status of the order_status text sent beside it (not a pending or
        info_received one). SF's unconfirmed 607 stays ``unknown`` wherever it is."""
        clock = clock or self.clock
        out = []
        for o in self.visible_orders(clock):
            if clock < o.labelled:
                continue
            reply_status = TEXT_STATUS[o.stage(clock)[1]]
            for p in o.parcels:
                seen = p.visible(clock)
                newest = max((s.utc for s in seen), default=None)
                for s in seen:
                    status = s.status
                    if s.code in OTHER_CODES and s.utc == newest and reply_status not in TEXT_BEHIND_SCANS:
                        status = reply_status
                    out.append({"tracking_number": p.tracking_number, "carrier_code": o.carrier_code, "utc": s.utc,
                                "local": hk_text(s.utc), "code": s.code, "message": s.message, "status": status})
        return out


# --- Building the world ----------------------------------------------------------------------------

def build_world(seed: int = 42, scale: float = 1.0, clock: datetime = DEFAULT_CLOCK) -> World:
    """The same orders for the same seed and scale; ids ascend with creation time."""
    r = rng(seed, "fuuffy", "orders")
    count = max(20, round(ORDERS_AT_SCALE_1 * scale))
    created = sorted(instant_between(r, ORDERS_START, ORDERS_END) for _ in range(count))
    used: set[str] = set()
    orders = [_build_order(r, FIRST_ORDER_ID + i * 3 + r.randrange(3), t, used) for i, t in enumerate(created)]
    return World(orders, clock)


def _tracking_number(r: random.Random, courier: str, used: set[str]) -> str:
    while True:
        number = {"Sf Express": "SF" + fake_id(r, 13), "Kerry Express": "KE" + fake_id(r, 10) + "HK",
                  "Hongkong Post": "CP" + fake_id(r, 9) + "HK"}[courier]
        if number not in used:
            used.add(number)
            return number


def _build_order(r: random.Random, order_id: int, created: datetime, used: set[str]) -> Order:
    courier = weighted(r, COURIERS)
    scenario = weighted(r, {k: v[0] for k, v in SCENARIOS.items()})
    if courier != "Sf Express" and scenario in NOT_OTHER:
        scenario = "delivered"
    labelled = created + timedelta(hours=r.randint(1, 20), seconds=r.randint(0, 3599))
    parcels = []
    if scenario not in NO_PARCEL:
        n = weighted(r, {1: 80, 2: 15, 3: 5})
        start = labelled + timedelta(hours=r.randint(2, 30))
        for i in range(n):
            scans = _scans(r, courier, SCENARIOS[scenario][1], start + timedelta(minutes=7 * i))
            parcels.append(Parcel(_tracking_number(r, courier, used), scans, oldest_first=r.random() < 0.5,
                                  data_as_string=r.random() < 0.12, list_as_string=r.random() < 0.12))
    destination = r.choice(DESTINATIONS)
    amount = r.randint(40, 900)
    return Order(
        order_id=str(order_id), created=created, scenario=scenario, courier=courier,
        service=r.choice(SERVICES[courier]), destination=destination,
        export_country=r.choice(("HONG KONG", "Hong Kong")), parcels=parcels,
        receiver={"name": fake_name(r).title(), "phone": f"+852 5{r.randint(100, 999)} {r.randint(1000, 9999)}",
                  "address": f"{r.randint(1, 200)} {r.choice(DISTRICTS)} Road, {r.choice(HK_PLACES)}"},
        amounts={"currency": "HKD", "total_amount": f"{amount}.00", "shipping_fee": f"{r.choice((30, 45, 60))}.00"},
        time_style=r.choice(("offset", "offset", "z", "naive")), lower_case=r.random() < 0.2, labelled=labelled,
    )


def _scans(r: random.Random, courier: str, steps: tuple[str, ...], start: datetime) -> list[Scan]:
    sf = courier == "Sf Express"
    table = SF_STEPS if sf else OTHER_STEPS
    scans: list[Scan] = []
    t = start
    place = r.choice(CN_PLACES if r.random() < 0.3 else HK_PLACES)
    for i, step in enumerate(steps):
        if sf and step == "collected" and r.random() < 0.2:
            step = "collected_54"
        if step not in table:
            step = "delivered" if step in ("locker", "handed", "note") else "transport"
            if any(s.step == step for s in scans):
                continue
        same_second = False
        if i:
            same_second = step in ("departed", "out_for_delivery") and r.random() < 0.25
            t += timedelta(seconds=0) if same_second else timedelta(minutes=r.randint(20, 900), seconds=r.randint(0, 59))
            if step == "note":
                t = scans[-1].utc + timedelta(seconds=r.randint(2, 40))
        code, message, status = table[step]
        place = r.choice(HK_PLACES) if step in ("outlet", "out_for_delivery") else place
        scans.append(Scan(t, step, code, message.format(p=place), place, status, len(scans)))
        if i and same_second and r.random() < 0.5:
            # Position in the array says nothing about order within one second (providers.md 6.4).
            scans[-2], scans[-1] = scans[-1], scans[-2]
        if sf and step == "transport" and r.random() < 0.1:
            t += timedelta(minutes=r.randint(5, 60))
            code, message, status = SF_STEPS["unconfirmed"]
            scans.append(Scan(t, "unconfirmed", code, message, place, status, len(scans)))
    return scans
