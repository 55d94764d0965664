"""Draws the Shopee sandbox's world from a seed: orders of the three shops, their lines, packages, scans and
return legs, by the scenario table below. ``world.py`` holds the model and renders payloads and truth from it."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from decimal import Decimal

from shipetl.sandbox.seed import fake_alnum, fake_id, instant_between, rng, unique, weighted

from .world import SHOPS, Line, Order, Package, ReturnLeg, Scan, Shop, World, epoch

ORDERS_START = datetime(2025, 9, 1, tzinfo=UTC)
ORDERS_END = datetime(2025, 12, 15, tzinfo=UTC)
ORDERS_AT_SCALE_1 = 1500
CENT = Decimal("0.01")

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
    create_time = epoch(created)
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
