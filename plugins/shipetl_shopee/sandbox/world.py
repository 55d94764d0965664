"""The Shopee sandbox's seeded world: shops, orders, lines, packages and scans, and the ground truth.

Everything is drawn (``generate.py``) from ``shipetl.sandbox.seed.rng`` so one seed gives the same world in
every process. Payloads (``order_json``, ``tracking_info_json``) and the truth tests compare against
(``expected_*``) are computed from the same storylines; the canonical statuses of the truth come from
the storyline table below, not from the plugin's status tables, so the two check each other.

Some packages on their way back (a RETURN_STARTED scan) have a cross-border return leg: a return
number, a courier and 2-5 reverse scans (no status code) after RETURN_STARTED, before RETURNED if
the parcel got back. Its truth: ``returned`` once the package's newest scan is RETURNED, else
``in_transit``; every reverse scan ``in_transit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)


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


def epoch(dt: datetime) -> int:
    """An instant as the epoch seconds Shopee sends."""
    return int(dt.timestamp())


def _utc(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


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
