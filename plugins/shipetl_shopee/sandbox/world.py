"""The Shopee sandbox's seeded world: shops, orders, lines, packages and scans, and the ground truth.

Everything is drawn from ``shipetl.sandbox.seed.rng`` so one seed gives the same world in every
process. Payloads (``order_json``, ``tracking_info_json``) and the truth tests compare against
(``expected_*``) are computed from the same storylines; the canonical statuses of the truth come from
the storyline table below, not from the plugin's status tables, so the two check each other.

Some packages on their way back (a RETURN_STARTED scan) have a cross-border return leg: a return
number, a courier and 2-5 reverse scans (no status code) after RETURN_STARTED, before RETURNED if
the parcel got back. Its truth: ``returned`` once the package's newest scan is RETURNED, else
``in_transit``; every reverse scan ``in_transit``.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shipetl.sandbox.seed import fake_alnum, fake_id, instant_between, rng, unique, weighted

DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)
ORDERS_START = datetime(2025, 9, 1, tzinfo=UTC)
ORDERS_END = datetime(2025, 12, 15, tzinfo=UTC)
ORDERS_AT_SCALE_1 = 1500
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Shop:
    shop_id: int
    region: str
    currency: str
    price_range: tuple[int, int]  # whole currency units
    names: tuple[str, ...]
    cities: tuple[tuple[str, str, str], ...]  # city, state, zipcode
    carriers: tuple[str, ...]
    language: str


SHOPS = (
    Shop(880101, "MY", "MYR", (5, 300), ("Nur Aisyah binti Ahmad", "陈伟明", "Muthu a/l Rajan", "Lim Mei Ling 🌸",
                                          "Ahmad Faizal", "黄嘉欣"),
         (("Kuala Lumpur", "Wilayah Persekutuan", "50450"), ("Asajaya", "Sarawak", "94600"),
          ("George Town", "Pulau Pinang", "10200"), ("Johor Bahru", "Johor", "80000")),
         ("SPX Express (MY)", "J&T Express", "Ninja Van"), "en"),
    Shop(880202, "TH", "THB", (59, 2990), ("สมชาย ใจดี", "วิภาวดี ศรีสุข", "ณัฐพล ทองคำ", "กมลชนก แก้วมณี 😊",
                                            "Somsak Wongsa"),
         (("กรุงเทพมหานคร", "กรุงเทพมหานคร", "10110"), ("เชียงใหม่", "เชียงใหม่", "50200"),
          ("ขอนแก่น", "ขอนแก่น", "40000")),
         ("SPX Express", "Kerry Express", "Flash Express"), "th"),
    Shop(880303, "SG", "SGD", (2, 200), ("王小明", "Tan Wei Jie", "李美玲 ✨", "Siti Nurhaliza", "ＪＯＨＮ　ＬＩＭ"),
         (("Singapore", "", "820116"), ("Singapore", "", "560234"), ("Singapore", "", "138577")),
         ("SPX Express (SG)", "Ninja Van (SG)", "Singpost POPstation - LPS (seller)"), "zh"),
)

PRODUCTS = (
    ("🎧 Wireless Earbuds Pro", ("Black", "White", "Mint 🍃")),
    ("Vitamin Bottles - Acc", ()),
    ("กระเป๋าเป้ Backpack 40L", ("Grey blue 40*60cm", "Khaki")),
    ("保温杯 Thermos 500ml", ("红色", "蓝色")),
    ("Phone Case iPhone 15 📱", ("Clear", "Matte black")),
    ("Ｔシャツ Oversized Tee", ("S", "M", "L", "XL")),
    ("Kopi O Premium 3-in-1 (40 sticks)", ()),
    ("ชุดเครื่องนอน Bed Sheet Set", ("Queen", "King")),
    ("LED Desk Lamp ✨", ()),
    ("手机支架 Phone Holder", ("Silver",)),
    ("Baby Wipes 80s x 12", ()),
    ("Running Shoes 👟", ("39", "40", "41", "42", "43")),
)

# Scan code -> canonical status it means (the sandbox's own reading of providers.md 1.7 and 6.2).
SCAN_STATUS = {
    "ORDER_CREATED": "info_received", "PICKUP_REQUESTED": "info_received", "PICKED_UP": "in_transit",
    "DELIVERY_PENDING": "in_transit", "FAILED_DELIVERED": "failed_attempt", "DELIVERED": "delivered",
    "RETURN_STARTED": "exception", "RETURNED": "returned", "LOST": "exception", "CANCELED": "exception",
    "TIMEOUT": "exception",
}
FINAL_SCANS = {"DELIVERED", "RETURNED", "LOST", "CANCELED"}
PACKAGE_STATUS = {"LOGISTICS_READY": "pending", "LOGISTICS_PENDING_ARRANGE": "pending",
                  "LOGISTICS_REQUEST_CREATED": "info_received"}
SCAN_TEXT = {
    "en": {"ORDER_CREATED": "Order is created", "PICKUP_REQUESTED": "Pickup has been requested",
           "PICKED_UP": "Parcel has been picked up by courier", "DELIVERY_PENDING": "Parcel is out for delivery",
           "FAILED_DELIVERED": "Delivery failed: recipient not available", "DELIVERED": "Parcel has been delivered",
           "RETURN_STARTED": "Parcel is being returned to seller", "RETURNED": "Parcel has been returned to seller",
           "LOST": "Parcel is lost", "CANCELED": "Shipment is cancelled", "TIMEOUT": "Pickup timed out",
           "HUB": "Parcel has arrived at sorting centre: {}"},
    "th": {"ORDER_CREATED": "สร้างคำสั่งซื้อแล้ว", "PICKUP_REQUESTED": "ร้องขอการเข้ารับพัสดุ",
           "PICKED_UP": "พนักงานเข้ารับพัสดุแล้ว", "DELIVERY_PENDING": "พัสดุกำลังนำส่ง",
           "FAILED_DELIVERED": "นำส่งไม่สำเร็จ: ไม่พบผู้รับ", "DELIVERED": "นำส่งพัสดุสำเร็จ",
           "RETURN_STARTED": "พัสดุกำลังตีกลับไปยังผู้ขาย", "RETURNED": "พัสดุถูกส่งคืนผู้ขายแล้ว",
           "LOST": "พัสดุสูญหาย", "CANCELED": "ยกเลิกการจัดส่ง", "TIMEOUT": "หมดเวลาเข้ารับพัสดุ",
           "HUB": "พัสดุถึงศูนย์คัดแยกสินค้า {}"},
    "zh": {"ORDER_CREATED": "订单已创建", "PICKUP_REQUESTED": "已请求揽收", "PICKED_UP": "快递员已揽收包裹",
           "DELIVERY_PENDING": "包裹正在派送中", "FAILED_DELIVERED": "派送失败：收件人不在",
           "DELIVERED": "包裹已签收 ✅", "RETURN_STARTED": "包裹正在退回卖家", "RETURNED": "包裹已退回卖家",
           "LOST": "包裹遗失", "CANCELED": "运单已取消", "TIMEOUT": "揽收超时", "HUB": "包裹已到达分拣中心：{}"},
}

# Scenario -> (weight, order_status, package logistics_status or None for no package, scan steps).
SCENARIOS: dict[str, tuple[float, str, str | None, tuple[str, ...]]] = {
    "unpaid": (6, "UNPAID", None, ()),
    "cancelled_early": (6, "CANCELLED", None, ()),
    "ready": (7, "READY_TO_SHIP", "LOGISTICS_READY", ()),
    "allocating": (2, "READY_TO_SHIP", "LOGISTICS_PENDING_ARRANGE", ()),
    "processed": (6, "PROCESSED", "LOGISTICS_REQUEST_CREATED", ("ORDER_CREATED", "PICKUP_REQUESTED")),
    "shipped": (14, "SHIPPED", "LOGISTICS_PICKUP_DONE", ("ORDER_CREATED", "PICKED_UP", "HUB")),
    "out_for_delivery": (4, "SHIPPED", "LOGISTICS_PICKUP_DONE", ("ORDER_CREATED", "PICKED_UP", "HUB",
                                                                 "DELIVERY_PENDING")),
    "to_confirm": (10, "TO_CONFIRM_RECEIVE", "LOGISTICS_DELIVERY_DONE", ("ORDER_CREATED", "PICKED_UP", "HUB",
                                                                          "DELIVERY_PENDING", "DELIVERED")),
    "completed": (28, "COMPLETED", "LOGISTICS_DELIVERY_DONE", ("ORDER_CREATED", "PICKED_UP", "HUB", "HUB",
                                                                "DELIVERY_PENDING", "DELIVERED")),
    "returning": (3, "TO_RETURN", "LOGISTICS_DELIVERY_FAILED", ("ORDER_CREATED", "PICKED_UP", "DELIVERY_PENDING",
                                                                "FAILED_DELIVERED", "RETURN_STARTED")),
    "returned": (4, "TO_RETURN", "LOGISTICS_DELIVERY_FAILED", ("ORDER_CREATED", "PICKED_UP", "DELIVERY_PENDING",
                                                               "FAILED_DELIVERED", "RETURN_STARTED", "RETURNED")),
    "cancelled_late": (4, "CANCELLED", "LOGISTICS_REQUEST_CANCELED", ("ORDER_CREATED", "CANCELED")),
    "lost": (2, "SHIPPED", "LOGISTICS_LOST", ("ORDER_CREATED", "PICKED_UP", "HUB", "LOST")),
    "in_cancel": (2, "IN_CANCEL", "LOGISTICS_READY", ()),
}
SPLIT_SHARE_OF_MULTI_LINE = 0.25  # about 8% of all orders ship as two packages
RETURN_LEG_SHARE = 0.5  # of packages on their way back: about 3% of all orders
RETURN_COURIERS = {"MY": ("SLS Return (MY)", "J&T Express Return"), "TH": ("Flash Express - Return", "SPX Return TH"),
                   "SG": ("Ninja Van Return (SG)", "SLS Return (SG)")}
REVERSE_TEXT = {  # first scan, then every later one (with a city)
    "en": ("Return parcel picked up by {}", "Return parcel at sorting centre: {}"),
    "th": ("{} เข้ารับพัสดุตีกลับแล้ว", "พัสดุตีกลับถึงศูนย์คัดแยกสินค้า {}"),
    "zh": ("{} 已揽收退货包裹", "退货包裹已到达分拣中心：{}"),
}


@dataclass
class Scan:
    t: int  # epoch seconds
    code: str
    description: str


@dataclass
class ReturnLeg:
    tracking_number: str
    courier: str
    scans: list[Scan]  # code "": reverse scans carry none


@dataclass
class Package:
    package_number: str
    logistics_status: str
    shipping_carrier: str
    items: list[tuple[int, int]]
    tracking_number: str = ""
    allocating: bool = False
    scans: list[Scan] = field(default_factory=list)
    return_leg: ReturnLeg | None = None

    @property
    def returning(self) -> bool:
        return any(s.code == "RETURN_STARTED" for s in self.scans)

    @property
    def returned(self) -> bool:
        return bool(self.scans) and self.scans[-1].code == "RETURNED"


@dataclass
class Line:
    item_id: int
    item_name: str
    item_sku: str
    model_id: int
    model_name: str
    model_sku: str
    quantity: int
    original: Decimal
    discounted: Decimal  # 0 for bundle-deal items, as Shopee reports them
    order_item_id: int
    promotion_type: str
    weight: float


@dataclass
class Order:
    shop: Shop
    order_sn: str
    scenario: str
    status: str
    create_time: int
    update_time: int
    pay_time: int | None
    ship_by_date: int
    pickup_done_time: int
    note: str
    note_update_time: int
    cod: bool
    buyer_user_id: int
    buyer_username: str
    recipient: dict[str, str]
    lines: list[Line]
    packages: list[Package]
    estimated_shipping_fee: Decimal
    actual_shipping_fee: Decimal | None
    total_amount: Decimal
    cancel_by: str = ""
    cancel_reason: str = ""


def _money(value: Decimal) -> float:
    """A Decimal as the JSON float Shopee sends (orjson writes the shortest text that reads back equal)."""
    return float(value)


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _utc(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


class World:
    """Every shop's orders, indexed for the routes, with the ground truth the tests compare with."""

    def __init__(self, orders: list[Order]) -> None:
        self.orders = orders
        self.shops = {s.shop_id: s for s in SHOPS}
        self.by_shop: dict[int, list[Order]] = {s.shop_id: [] for s in SHOPS}
        self.by_sn: dict[tuple[int, str], Order] = {}
        for order in orders:
            self.by_shop[order.shop.shop_id].append(order)
            self.by_sn[(order.shop.shop_id, order.order_sn)] = order
        for shop_orders in self.by_shop.values():
            shop_orders.sort(key=lambda o: (-o.update_time, o.order_sn))  # newest first, as Shopee lists

    # --- payloads --------------------------------------------------------------------------------

    def order_json(self, o: Order, fields: set[str]) -> dict[str, Any]:
        """The ``order_list[]`` entry of ``get_order_detail``: default fields, plus ``fields`` requested."""
        out: dict[str, Any] = {
            "order_sn": o.order_sn, "region": o.shop.region, "currency": o.shop.currency, "cod": o.cod,
            "order_status": o.status, "message_to_seller": "", "create_time": o.create_time,
            "update_time": o.update_time, "days_to_ship": 3, "ship_by_date": o.ship_by_date,
        }
        confirmed = o.actual_shipping_fee is not None
        optional: dict[str, Any] = {
            "buyer_user_id": o.buyer_user_id, "buyer_username": o.buyer_username,
            "estimated_shipping_fee": _money(o.estimated_shipping_fee),
            "actual_shipping_fee": _money(o.actual_shipping_fee) if confirmed else None,
            "actual_shipping_fee_confirmed": confirmed, "recipient_address": o.recipient,
            "note": o.note, "note_update_time": o.note_update_time, "pay_time": o.pay_time,
            "dropshipper": "", "dropshipper_phone": "", "split_up": len(o.packages) > 1,
            "buyer_cancel_reason": "", "cancel_by": o.cancel_by, "cancel_reason": o.cancel_reason,
            "fulfillment_flag": "fulfilled_by_local_seller", "pickup_done_time": o.pickup_done_time,
            "shipping_carrier": o.packages[0].shipping_carrier if o.packages else "",
            "checkout_shipping_carrier": o.packages[0].shipping_carrier if o.packages else None,
            "payment_method": "Cash on Delivery" if o.cod else "Credit/Debit Card",
            "total_amount": _money(o.total_amount), "order_chargeable_weight_gram": 0,
            "item_list": [self._line_json(line) for line in o.lines],
            "package_list": [{
                "package_number": p.package_number, "logistics_status": p.logistics_status,
                "shipping_carrier": p.shipping_carrier,
                "item_list": [{"item_id": i, "model_id": m, "product_location_id": "IDL"} for i, m in p.items],
                "parcel_chargeable_weight_gram": 0,
            } for p in o.packages],
        }
        out.update({k: v for k, v in optional.items() if k in fields})
        return out

    @staticmethod
    def _line_json(line: Line) -> dict[str, Any]:
        return {
            "item_id": line.item_id, "item_name": line.item_name, "item_sku": line.item_sku,
            "model_id": line.model_id, "model_name": line.model_name, "model_sku": line.model_sku,
            "model_quantity_purchased": line.quantity, "model_original_price": _money(line.original),
            "model_discounted_price": _money(line.discounted), "wholesale": False, "weight": line.weight,
            "add_on_deal": False, "main_item": False, "add_on_deal_id": 0, "promotion_type": line.promotion_type,
            "promotion_id": 0, "order_item_id": line.order_item_id, "promotion_group_id": 0,
            "image_info": {"image_url": f"https://cf.shopee.sg/file/{line.item_id:x}_tn"},
            "product_location_id": ["IDL"],
        }

    @staticmethod
    def tracking_info_json(o: Order, p: Package) -> dict[str, Any]:
        """``get_tracking_info``'s ``response``: scans newest first; a package on its way back has the reverse
        fields, empty when it has no return leg."""
        reply = {"order_sn": o.order_sn, "package_number": p.package_number, "logistics_status": p.logistics_status,
                 "tracking_info": [{"update_time": s.t, "description": s.description, "logistics_status": s.code}
                                   for s in reversed(p.scans)]}
        if p.returning:
            leg = p.return_leg or ReturnLeg("", "", [])
            reply.update(reversed_tracking_number=leg.tracking_number, reversed_courier_name=leg.courier,
                         reversed_tracking_info=[{"update_time": s.t, "description": s.description}
                                                 for s in reversed(leg.scans)])
        return reply

    # --- ground truth ------------------------------------------------------------------------------

    def expected_orders(self, shop_id: int) -> list[dict[str, Any]]:
        """Per order: UTC times (None for 0/null), Decimal money, the row the pipeline must load."""
        return [{
            "order_id": o.order_sn, "status_raw": o.status, "created_at": _utc(o.create_time),
            "updated_at": _utc(o.update_time), "paid_at": _utc(o.pay_time), "ship_by_at": _utc(o.ship_by_date),
            "currency": o.shop.currency, "total_amount": o.total_amount,
            "shipping_fee": o.actual_shipping_fee if o.actual_shipping_fee is not None else o.estimated_shipping_fee,
            "destination_country": o.shop.region, "item_count": len(o.lines),
        } for o in self.by_shop[shop_id]]

    def expected_items(self, shop_id: int) -> list[dict[str, Any]]:
        return [{
            "order_id": o.order_sn, "line_id": f"{ln.order_item_id}:{ln.item_id}:{ln.model_id}",
            "title": ln.item_name, "quantity": ln.quantity, "unit_price": ln.original,
            "discounted_price": None if ln.promotion_type == "bundle_deal" else ln.discounted,
        } for o in self.by_shop[shop_id] for ln in o.lines]

    def expected_shipments(self, shop_id: int) -> list[dict[str, Any]]:
        """Per package: status from its newest scan, else from its logistics_status (providers.md 6.2); then
        its return leg, if any."""
        rows = []
        for o in self.by_shop[shop_id]:
            for p in o.packages:
                newest = p.scans[-1] if p.scans else None
                delivered = [s.t for s in p.scans if s.code == "DELIVERED"]
                rows.append({
                    "shipment_id": p.package_number, "order_id": o.order_sn,
                    "tracking_number": p.tracking_number or None, "service": p.shipping_carrier,
                    "status": SCAN_STATUS[newest.code] if newest else PACKAGE_STATUS[p.logistics_status],
                    "status_raw": newest.code if newest else p.logistics_status,
                    "is_final": newest is not None and newest.code in FINAL_SCANS,
                    "shipped_at": _utc(o.pickup_done_time), "delivered_at": _utc(max(delivered, default=None)),
                    "last_event_at": _utc(newest.t if newest else None),
                })
                if p.return_leg:
                    rows.append({
                        "shipment_id": f"{p.package_number}:return", "order_id": o.order_sn,
                        "tracking_number": p.return_leg.tracking_number, "service": p.return_leg.courier,
                        "status": "returned" if p.returned else "in_transit", "status_raw": None,
                        "is_final": p.returned, "shipped_at": None, "delivered_at": None,
                        "last_event_at": _utc(p.return_leg.scans[-1].t),
                    })
        return rows

    def expected_events(self, shop_id: int) -> list[dict[str, Any]]:
        forward = [{"shipment_id": p.package_number, "tracking_number": p.tracking_number, "occurred_at": _utc(s.t),
                    "status_raw": s.code, "status": SCAN_STATUS[s.code], "description": s.description}
                   for o in self.by_shop[shop_id] for p in o.packages for s in p.scans]
        reverse = [{"shipment_id": f"{p.package_number}:return", "tracking_number": p.return_leg.tracking_number,
                    "occurred_at": _utc(s.t), "status_raw": None, "status": "in_transit", "description": s.description}
                   for o in self.by_shop[shop_id] for p in o.packages if p.return_leg for s in p.return_leg.scans]
        return forward + reverse


# --- building -------------------------------------------------------------------------------------

def build_world(seed: int = 42, scale: float = 1.0) -> World:
    """The deterministic world: ``int(1500 * scale)`` orders spread over the three shops."""
    count = max(len(SHOPS), int(ORDERS_AT_SCALE_1 * scale))
    used: set[str] = set()
    orders = [_build_order(rng(seed, "shopee", "order", i), rng(seed, "shopee", "return", i), SHOPS[i % len(SHOPS)],
                           used) for i in range(count)]
    return World(orders)


def _catalog_price(r: random.Random, shop: Shop) -> Decimal:
    low, high = shop.price_range
    whole = r.randint(low, high)
    cents = r.choice((0, 0, 50, 90, 99)) if shop.currency == "THB" else r.randint(0, 99)
    return Decimal(whole) + Decimal(cents) / 100


def _lines(r: random.Random, shop: Shop) -> list[Line]:
    lines = []
    bundle = r.random() < 0.1
    bundle_id = int(fake_id(r, 10))
    for n in range(r.choice((1, 1, 1, 2, 2, 3, 4))):
        name, models = r.choice(PRODUCTS)
        item_id = int(fake_id(r, 10))
        model_index = r.randrange(len(models)) if models else None
        model_id = int(fake_id(r, 11)) if models else 0
        original = _catalog_price(r, shop)
        in_bundle = bundle and n < 2
        discounted = Decimal(0) if in_bundle else (original * Decimal(r.choice((100, 100, 90, 85)))
                                                   / 100).quantize(CENT)
        lines.append(Line(
            item_id=item_id, item_name=name, item_sku=f"SKU-{item_id % 100000}", model_id=model_id,
            model_name=models[model_index] if models else "", model_sku=f"M{model_id % 1000000}" if models else "",
            quantity=r.choice((1, 1, 1, 2, 3)), original=original, discounted=discounted,
            order_item_id=bundle_id if in_bundle else item_id,
            promotion_type="bundle_deal" if in_bundle else "", weight=round(r.uniform(0.1, 3.0), 2)))
    return lines


def _scans(r: random.Random, steps: tuple[str, ...], start: int, shop: Shop) -> list[Scan]:
    texts = SCAN_TEXT[shop.language]
    scans, t = [], start
    for step in steps:
        t += r.randint(1800, 36 * 3600)
        code = "PICKED_UP" if step == "HUB" else step
        text = texts["HUB"].format(r.choice(shop.cities)[0]) if step == "HUB" else texts[step]
        scans.append(Scan(t, code, text))
    return scans


def _return_leg(r: random.Random, p: Package, shop: Shop, used: set[str]) -> ReturnLeg:
    """2-5 reverse scans after RETURN_STARTED (and before RETURNED, if the parcel got back)."""
    started = next(s.t for s in p.scans if s.code == "RETURN_STARTED")
    count = r.randint(2, 5)
    if p.returned:
        times = sorted(r.sample(range(started + 1, p.scans[-1].t), count))
    else:
        times = [started + gap for gap in itertools.accumulate(r.randint(1800, 24 * 3600) for _ in range(count))]
    courier = r.choice(RETURN_COURIERS[shop.region])
    first, later = REVERSE_TEXT[shop.language]
    texts = [first.format(courier)] + [later.format(r.choice(shop.cities)[0]) for _ in times[1:]]
    number = unique(r, used, lambda rr: f"RTS{shop.region}{fake_id(rr, 12)}")
    return ReturnLeg(number, courier, [Scan(t, "", text) for t, text in zip(times, texts, strict=True)])


def _build_order(r: random.Random, returns: random.Random, shop: Shop, used: set[str]) -> Order:
    """One order of ``shop``; ``returns`` draws its return legs (a stream of its own, so the rest stays put)."""
    scenario = weighted(r, {k: v[0] for k, v in SCENARIOS.items()})
    _, status, package_status, steps = SCENARIOS[scenario]
    created = instant_between(r, ORDERS_START, ORDERS_END)
    create_time = _epoch(created)
    order_sn = unique(r, used, lambda rr: created.strftime("%y%m%d") + fake_alnum(rr, 8))
    cod = package_status is not None and r.random() < 0.15
    pay_time = None if scenario == "unpaid" or cod else create_time + r.randint(20, 3600)
    lines = _lines(r, shop)
    name = r.choice(shop.names)
    city, state, zipcode = r.choice(shop.cities)
    recipient = {"name": name, "phone": "******" + fake_id(r, 2), "town": "", "district": "", "city": city,
                 "state": state, "region": shop.region, "zipcode": zipcode,
                 "full_address": f"{r.randint(1, 300)} {city} {state} {zipcode} {shop.region}".replace("  ", " ")}
    packages: list[Package] = []
    if package_status is not None:
        split = len(lines) > 1 and r.random() < SPLIT_SHARE_OF_MULTI_LINE
        groups = [lines[:1], lines[1:]] if split else [lines]
        carrier = r.choice(shop.carriers)
        for group in groups:
            package = Package(
                package_number=unique(r, used, lambda rr: "OFG" + fake_id(rr, 14)),
                logistics_status=package_status, shipping_carrier=carrier,
                items=[(ln.item_id, ln.model_id) for ln in group], allocating=scenario == "allocating")
            if steps:
                package.tracking_number = unique(r, used, lambda rr: f"SPX{shop.region}0{fake_id(rr, 11)}")
                package.scans = _scans(r, steps, (pay_time or create_time) + r.randint(600, 7200), shop)
            if package.returning and returns.random() < RETURN_LEG_SHARE:
                package.return_leg = _return_leg(returns, package, shop, used)
            packages.append(package)
    picked = [s.t for p in packages for s in p.scans if s.code == "PICKED_UP"]
    pickup_done_time = min(picked) if picked else 0
    if cod and packages and packages[0].scans and packages[0].scans[-1].code == "DELIVERED":
        pay_time = packages[0].scans[-1].t + r.randint(3600, 4 * 86400)  # COD: paid after delivery
    goods = sum((ln.discounted or ln.original * Decimal("0.8")).quantize(CENT) * ln.quantity for ln in lines)
    estimated = _catalog_price(r, shop) / 10
    estimated = estimated.quantize(CENT)
    delivered = any(s.code == "DELIVERED" for p in packages for s in p.scans)
    actual = (estimated + Decimal(r.choice((0, 0, 50, 20))) / 100).quantize(CENT) if delivered else None
    has_note = r.random() < 0.2
    note_time = create_time + r.randint(60, 86400) if has_note else 0
    cancelled = status == "CANCELLED"
    cancel_time = create_time + r.randint(600, 3 * 86400) if cancelled else 0
    times = [create_time, pay_time or 0, note_time, cancel_time, *(s.t for p in packages for s in p.scans),
             *(s.t for p in packages if p.return_leg for s in p.return_leg.scans)]
    return Order(
        shop=shop, order_sn=order_sn, scenario=scenario, status=status, create_time=create_time,
        update_time=max(times), pay_time=pay_time,
        ship_by_date=0 if scenario == "cancelled_early" else create_time + 3 * 86400,
        pickup_done_time=pickup_done_time, note="gift wrap 🎁" if has_note else "", note_update_time=note_time,
        cod=cod, buyer_user_id=int(fake_id(r, 9)), buyer_username=f"buyer_{fake_alnum(r, 6).lower()}",
        recipient=recipient, lines=lines, packages=packages, estimated_shipping_fee=estimated,
        actual_shipping_fee=actual, total_amount=goods + estimated,
        cancel_by=("buyer" if r.random() < 0.6 else "system") if cancelled else "",
        cancel_reason="BUYER_REQUEST" if cancelled else "",
    )
