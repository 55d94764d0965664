"""The AliExpress sandbox's seeded orders and parcels, how each reply renders them, and the ground truth.

Lists come in every shape real replies use (wrapper of many, wrapper of one bare object, bare list, ``{}``),
some orders send numbers as strings, nodes are in English, Chinese or both. Ground truth
(``World.expected_*``) comes from the same storyline the payloads are rendered from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from shipetl.sandbox.seed import fake_id, instant_between, rng, unique, weighted

# --- Provider facts and sandbox settings -----------------------------------------------------

ORDERS_AT_SCALE_1 = 300
DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)
ORDERS_START = datetime(2025, 9, 1, tzinfo=UTC)
ORDERS_END = datetime(2025, 12, 18, tzinfo=UTC)
ORDER_ZONE = ZoneInfo("America/Los_Angeles")
CARRIER_NAMES = ("AliExpress standard shipping", "Cainiao Super Economy Global", "AliExpress Selection Standard",
                 "YunExpress Global Direct line")
CURRENCIES = {"USD": 70, "EUR": 20, "GBP": 10}

# Node kind -> (canonical status the pipeline should give it, English (name, desc), Chinese (name, desc)).
NODES: dict[str, tuple[str, tuple[str, str], tuple[str, str]]] = {
    "created": ("info_received", ("Order created", "Your order has been created"), ("订单已创建", "订单已创建，等待卖家发货")),
    "preparing": ("info_received", ("Package in preparation", "Seller is preparing your package"),
                  ("包裹准备中", "卖家正在备货")),
    "picked_up": ("in_transit", ("Delivery update", "Package picked up by the logistics provider"),
                  ("揽收", "【深圳转运中心】已揽收")),
    "departed": ("in_transit", ("Delivery update", "Departed from the country of origin"),
                 ("运输中", "已离开【深圳】，发往【洛杉矶】")),
    "arrived": ("in_transit", ("Delivery update", "Your package arrived at local Facility."),
                ("到达", "到达【洛杉矶】处理中心")),
    "customs": ("in_transit", ("Delivery update", "Import customs clearance complete"), ("清关", "进口清关完成")),
    "out": ("out_for_delivery", ("Out for delivery", "Courier is delivering your package"), ("派送", "快件派送中")),
    "attempt": ("failed_attempt", ("Delivery update", "Delivery attempt failed: recipient not available"),
                ("派送", "投递失败，收件人不在")),
    "pickup": ("available_for_pickup", ("Delivery update", "Ready for collection at the pickup point"),
               ("待取件", "已到达自提点，请及时取件")),
    "delivered": ("delivered", ("Delivered", "Package delivered to the recipient"), ("已签收", "已签收，签收人：本人")),
    "returning": ("exception", ("Delivery update", "Package is being returned"), ("退回", "包裹退回中")),
    "returned": ("returned", ("Returned", "Package returned to sender"), ("退回", "已退回寄件人")),
    "held": ("exception", ("Delivery update", "Package held by customs"), ("异常", "海关扣留")),
}
# logistics_status -> the parcel status an order implies before its parcels have scans (providers.md 2.7).
ORDER_PARCEL_STATUS = {"NO_LOGISTICS": "pending", "WAIT_SELLER_SEND_GOODS": "pending", "SELLER_SEND_PART_GOODS": "in_transit",
                       "SELLER_SEND_GOODS": "in_transit", "BUYER_ACCEPT_GOODS": "delivered"}
FINAL_KINDS = frozenset({"delivered", "returned"})
_TRANSIT = ("created", "preparing", "picked_up", "departed", "arrived")
# Parcel scenario -> (weight, storyline). "labelled" has a number but no node yet; "pre_ship" no number yet.
SCENARIOS: dict[str, tuple[int, tuple[str, ...]]] = {
    "delivered": (50, (*_TRANSIT, "customs", "out", "delivered")),
    "in_transit": (14, _TRANSIT[:4]),
    "out": (5, (*_TRANSIT, "customs", "out")),
    "attempt": (5, (*_TRANSIT, "out", "attempt")),
    "pickup": (5, (*_TRANSIT, "pickup")),
    "returned": (4, (*_TRANSIT, "out", "attempt", "returning", "returned")),
    "held": (4, (*_TRANSIT[:4], "held")),
    "pre_ship": (8, ("created", "preparing")),
    "labelled": (5, ()),
}
# How an order's lists and numbers are written in its replies (providers.md 2.8, 6.3).
SHAPES = {"wrapped": 50, "bare": 20, "strings": 15, "single_object": 15}
NO_TRACKING_SHARE = 0.08
PARCEL_COUNTS = {1: 75, 2: 18, 3: 7}
LANGUAGES = {"en": 65, "zh": 15, "mixed": 20}


@dataclass
class Node:
    kind: str
    at: datetime
    name: str
    desc: str

    @property
    def status(self) -> str:
        return NODES[self.kind][0]


@dataclass
class Parcel:
    mail_no: str
    carrier_name: str
    eta: datetime | None
    nodes: list[Node]
    items: list[dict[str, Any]]
    newest_first: bool


@dataclass
class Order:
    order_id: str
    created: datetime
    gmt_create: str
    paid: str
    order_status: str
    logistics_status: str
    currency: str
    lines: list[dict[str, Any]]
    shape: str
    parcels: list[Parcel] = field(default_factory=list)
    has_tracking: bool = True

    @property
    def amount(self) -> Decimal:
        return sum((Decimal(line["price"]) * line["count"] for line in self.lines), Decimal("0"))


def _local_text(at: datetime) -> str:
    return at.astimezone(ORDER_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _from_local_text(text: str) -> datetime:
    """How the pipeline reads naive Pacific text: an ambiguous wall time is its first occurrence (fold=0)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ORDER_ZONE, fold=0).astimezone(UTC)


def _ms(at: datetime | None) -> int:
    return int(at.timestamp()) * 1000 if at else 0


class World:
    """The seeded orders, how each reply renders them, and what the pipeline should load from them."""

    def __init__(self, orders: list[Order]) -> None:
        self.orders = orders
        self.by_id = {o.order_id: o for o in orders}

    # --- rendering ---------------------------------------------------------------------------

    @staticmethod
    def _num(order: Order, value: int) -> int | str:
        return str(value) if order.shape == "strings" else value

    @staticmethod
    def _list(order: Order, wrapper: str, items: list[Any]) -> Any:
        if order.shape == "bare":
            return items
        if not items:
            return {}
        if order.shape == "single_object" and len(items) == 1:
            return {wrapper: items[0]}
        return {wrapper: items}

    def order_result(self, o: Order) -> dict[str, Any]:
        lines = [{"product_id": self._num(o, int(line["product_id"])), "product_name": line["title"],
                  "product_count": self._num(o, line["count"]), "sku_attr": line["sku_attr"],
                  "product_price": {"amount": line["price"], "currency_code": o.currency}} for line in o.lines]
        logistics = [{"logistics_no": p.mail_no, "logistics_service": p.carrier_name} for p in o.parcels if p.mail_no]
        amount = {"amount": str(o.amount), "currency_code": o.currency}
        return {
            "gmt_create": o.gmt_create, "order_paidtime_string": o.paid, "order_status": o.order_status,
            "logistics_status": o.logistics_status, "order_amount": amount, "user_order_amount": amount,
            "child_order_list": self._list(o, "aeop_child_order_info", lines),
            "logistics_info_list": self._list(o, "aeop_order_logistics_info", logistics),
            "store_info": {"store_id": self._num(o, 1100000 + int(o.order_id[-3:])), "store_name": "Sandbox Store",
                           "store_url": "https://www.aliexpress.com/store/1100000"},
        }

    def tracking_result(self, o: Order) -> dict[str, Any]:
        details = []
        for p in o.parcels:
            nodes = [{"time_stamp": self._num(o, _ms(n.at)), "tracking_name": n.name, "tracking_detail_desc": n.desc}
                     for n in (reversed(p.nodes) if p.newest_first else p.nodes)]
            items = [{"item_id": self._num(o, int(i["product_id"])), "quantity": self._num(o, i["count"]),
                      "item_title": i["title"], "sku_desc": i["sku_attr"]} for i in p.items]
            detail: dict[str, Any] = {"mail_no": p.mail_no, "carrier_name": p.carrier_name,
                                      "detail_node_list": self._list(o, "detail_node", nodes),
                                      "package_item_list": self._list(o, "package_item", items) if items else {}}
            if p.eta is not None:
                detail["eta_time_stamps"] = self._num(o, _ms(p.eta))
            details.append(detail)
        return {"ret": True, "code": "", "msg": "",
                "data": {"tracking_detail_line_list": self._list(o, "tracking_detail", details)}}

    # --- ground truth ------------------------------------------------------------------------

    def not_found_ids(self) -> list[str]:
        """Orders whose tracking call answers ``ret: false`` / ``1001``."""
        return [o.order_id for o in self.orders if not o.has_tracking]

    def expected_orders(self) -> list[dict[str, Any]]:
        return [{"order_id": o.order_id, "status_raw": o.order_status, "status": ORDER_PARCEL_STATUS[o.logistics_status],
                 "created_at": _from_local_text(o.gmt_create),
                 "paid_at": _from_local_text(o.paid), "total_amount": o.amount, "currency": o.currency,
                 "item_count": len(o.lines)} for o in self.orders]

    def expected_order_items(self) -> list[dict[str, Any]]:
        return [{"order_id": o.order_id, "item_id": line["product_id"], "quantity": line["count"],
                 "unit_price": Decimal(line["price"])} for o in self.orders for line in o.lines]

    @staticmethod
    def _shipment_id(o: Order, position: int, p: Parcel) -> str:
        return p.mail_no or f"{o.order_id}-P{position}"

    def expected_shipments(self) -> list[dict[str, Any]]:
        out = []
        for o in self.orders:
            for pos, p in enumerate(o.parcels if o.has_tracking else [], start=1):
                newest = max(p.nodes, key=lambda n: n.at) if p.nodes else None
                out.append({
                    "shipment_id": self._shipment_id(o, pos, p), "tracking_number": p.mail_no or None,
                    "order_id": o.order_id,
                    # A parcel with no node yet takes the status its order's logistics_status implies.
                    "status": newest.status if newest else "in_transit",
                    "is_final": bool(newest and newest.kind in FINAL_KINDS),
                    "estimated_delivery_at": p.eta, "last_event_at": newest.at if newest else None,
                    "delivered_at": newest.at if newest and newest.kind == "delivered" else None,
                })
        return out

    def expected_events(self) -> list[dict[str, Any]]:
        """One row per distinct scan; a scan repeated verbatim in two parcels of an order counts twice."""
        return [{"shipment_id": self._shipment_id(o, pos, p), "occurred_at": n.at, "status_raw": n.name,
                 "description": n.desc, "status": n.status}
                for o in self.orders if o.has_tracking for pos, p in enumerate(o.parcels, start=1) for n in p.nodes]


# --- building the world --------------------------------------------------------------------------

def build_world(seed: int = 42, scale: float = 1.0, orders: int | None = None, clock: datetime = DEFAULT_CLOCK) -> World:
    """``orders`` (default ``ORDERS_AT_SCALE_1 * scale``) seeded orders, the same for the same arguments."""
    r = rng(seed, "aliexpress", "orders")
    count = orders if orders is not None else max(1, round(ORDERS_AT_SCALE_1 * scale))
    used: set[str] = set()
    return World([_build_order(r, clock, used) for _ in range(count)])



def _build_order(r: random.Random, clock: datetime, used: set[str]) -> Order:
    order_id = unique(r, used, lambda r: "8" + fake_id(r, 15))
    created = instant_between(r, ORDERS_START, ORDERS_END)
    currency = weighted(r, CURRENCIES)
    lines = [{"product_id": "1005" + fake_id(r, 12), "title": r.choice(("Elegant Flounce Mini Skirt", "USB-C Cable 2m",
                                                                         "Phone Case", "LED Strip 5m", "Silk Scarf")),
              "count": r.randint(1, 3), "price": f"{r.randint(199, 4999) / 100:.2f}",
              "sku_attr": f"Color:{r.choice(('Red', 'Black', 'Silvery'))}; Size:{r.choice('SML')}"}
             for _ in range(r.randint(1, 3))]
    order = Order(order_id, created, _local_text(created), _local_text(created + timedelta(minutes=r.randint(1, 90))),
                  "", "", currency, lines, weighted(r, SHAPES))
    if r.random() < NO_TRACKING_SHARE:
        order.has_tracking = False
        order.order_status, order.logistics_status = r.choice(
            (("PLACE_ORDER_SUCCESS", "NO_LOGISTICS"), ("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_SEND_GOODS")))
        return order
    n = weighted(r, PARCEL_COUNTS)
    shared_start = created + timedelta(minutes=r.randint(5, 600))
    for i in range(n):
        order.parcels.append(_build_parcel(r, clock, used, shared_start, lines[i % len(lines):][:1] if n > 1 else lines))
    _order_statuses(r, order)
    return order


def _build_parcel(r: random.Random, clock: datetime, used: set[str], start: datetime, items) -> Parcel:
    scenario = weighted(r, {k: w for k, (w, _) in SCENARIOS.items()})
    kinds = SCENARIOS[scenario][1]
    language = weighted(r, LANGUAGES)
    nodes: list[Node] = []
    at = start  # every parcel of an order starts with the same "created" scan: identical nodes across parcels
    for i, kind in enumerate(kinds):
        if i:
            at += timedelta(seconds=r.randint(3 * 3600, 60 * 3600))
        if at > clock:
            break
        chinese = language == "zh" or (language == "mixed" and i < len(kinds) // 2)
        name, desc = NODES[kind][2 if chinese else 1]
        nodes.append(Node(kind, at, name, desc))
    mail_no = "" if scenario == "pre_ship" else unique(r, used, lambda r: r.choice(
        (lambda: "42" + fake_id(r, 32), lambda: "LP00" + fake_id(r, 12), lambda: "AEUS" + fake_id(r, 11) + "YQ"))())
    eta = None if scenario == "pre_ship" else (start + timedelta(days=r.randint(12, 30)) if r.random() < 0.9 else None)
    return Parcel(mail_no, r.choice(CARRIER_NAMES), eta, nodes, items if r.random() < 0.9 else [], r.random() < 0.6)


def _order_statuses(r: random.Random, order: Order) -> None:
    shipped = [p for p in order.parcels if p.mail_no]
    done = all(p.nodes and p.nodes[-1].kind in FINAL_KINDS for p in order.parcels)
    if not shipped:
        order.order_status, order.logistics_status = "WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_SEND_GOODS"
    elif len(shipped) < len(order.parcels):
        order.order_status, order.logistics_status = "SELLER_PART_SEND_GOODS", "SELLER_SEND_PART_GOODS"
    elif done and r.random() < 0.6:
        order.order_status, order.logistics_status = "FINISH", "BUYER_ACCEPT_GOODS"
    else:
        order.order_status, order.logistics_status = "WAIT_BUYER_ACCEPT_GOODS", "SELLER_SEND_GOODS"
