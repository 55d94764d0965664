"""Deterministic generator of Shopee ``GET /api/v2/order/get_order_detail`` replies as NDJSON.

    python tests/benchmarks/gen_shopee.py --orders 100000 --out /tmp/shopee_100k.ndjson [--seed 42]

One reply a line, in the real envelope (``request_id``, ``error: ""``, ``message: ""``,
``response.order_list[]`` of up to 50 orders, ``warning: []``), each order carrying the optional fields
shipetl's Shopee plugin requests (client.DETAIL_OPTIONAL_FIELDS), shaped like
``plugins/shipetl_shopee/fixtures/order_detail.json``: 1-5 item lines (bundle deals share
``order_item_id`` and report ``model_discounted_price: 0``), 0-2 packages (split orders), a recipient
address with local-script names and pre-masked phones, ``pay_time: null`` while unpaid,
``pickup_done_time: 0`` before pickup, money as JSON floats in major units, a mix of order statuses
including CANCELLED.

Writes FILE.meta.json with the reply, order, item-line and package counts, for the benchmark's count
check. Stdlib only; the same seed and N give byte-identical output.
"""
import argparse
import json
import random
from datetime import datetime, timezone

BATCH = 50  # get_order_detail takes at most 50 order numbers
# region -> currency, money decimals, price range (major units), carriers, places
MARKETS = {
    "SG": ("SGD", 2, (1.5, 250.0), ["Singpost POPstation - LPS (seller)", "SPX Express", "Ninja Van"],
           [("", "", "", "", "820116", "BLOCK 116, EDGEFIELD PLAINS, #05-334, SG, 820116"),
            ("", "", "", "", "238801", "1 ORCHARD TURN, #04-11, SG, 238801")]),
    "MY": ("MYR", 2, (3.0, 600.0), ["SPX Express", "J&T Express", "Pos Laju"],
           [("", "", "Kuala Lumpur", "Wilayah Persekutuan", "50450", "12 Jalan Ampang, 50450 Kuala Lumpur"),
            ("", "", "George Town", "Pulau Pinang", "10200", "88 Lebuh Chulia, 10200 George Town")]),
    "TH": ("THB", 2, (20.0, 9000.0), ["Kerry Express", "Flash Express", "SPX Express"],
           [("", "บางรัก", "กรุงเทพมหานคร", "กรุงเทพมหานคร", "10500", "99/1 ถนนสีลม บางรัก กรุงเทพมหานคร 10500"),
            ("", "เมืองเชียงใหม่", "เชียงใหม่", "เชียงใหม่", "50200", "7 ถนนราชดำเนิน เมืองเชียงใหม่ เชียงใหม่ 50200")]),
    "PH": ("PHP", 2, (50.0, 15000.0), ["J&T Express", "SPX Express", "Ninja Van"],
           [("Barangay 76", "Pasay", "Metro Manila", "NCR", "1300", "Blk 3 Lot 5, Barangay 76, Pasay, Metro Manila")]),
    "VN": ("VND", 0, (15000, 5000000), ["Giao Hàng Nhanh", "SPX Express", "Giao Hàng Tiết Kiệm"],
           [("Phường Bến Nghé", "Quận 1", "Hồ Chí Minh", "", "700000", "12 Nguyễn Huệ, Phường Bến Nghé, Quận 1, Hồ Chí Minh")]),
    "ID": ("IDR", 0, (5000, 8000000), ["J&T Express", "SiCepat REG", "SPX Standard"],
           [("Kebayoran Baru", "Jakarta Selatan", "DKI Jakarta", "DKI Jakarta", "12160", "Jl. Senopati No. 8, Kebayoran Baru, Jakarta Selatan")]),
    "TW": ("TWD", 0, (30, 20000), ["7-ELEVEN", "蝦皮店到店", "黑貓宅急便"],
           [("", "大安區", "台北市", "", "106", "台北市大安區忠孝東路四段 100 號 5 樓")]),
    "BR": ("BRL", 2, (5.0, 2500.0), ["Shopee Xpress", "Correios", "Jadlog"],
           [("", "Pinheiros", "São Paulo", "SP", "05422-000", "Rua dos Pinheiros, 870, Pinheiros, São Paulo - SP")]),
}
MARKET_WEIGHTS = {"SG": 10, "MY": 12, "TH": 15, "PH": 12, "VN": 15, "ID": 18, "TW": 10, "BR": 8}
NAMES = ["Tan Wei Ming", "สมชาย ใจดี", "王小明", "Nguyễn Thị Hoa", "Siti Nurhaliza", "陳美玲", "Juan dela Cruz",
         "João da Silva", "Ahmad bin Ismail", "김민준", "Łukasz Żółć", "Buyer 🛍️"]
USERNAMES = ["drcbuy_uat_sg_1", "somchai_shop", "王小明", "hoa.nguyen", "siti_88", "mei_ling", "jdc_ph", "joaosilva",
             "ahmad.i", "minjun_k", "lukasz_zolc", "buyer🛍️"]
PRODUCTS = ["Vitamin Bottles - Acc", "🎧 หูฟังไร้สาย Earbuds", "保温杯 Thermos", "Kopi O Premium ☕", "Áo thun cotton nam",
            "Sepatu Lari Pria", "手機殼 iPhone 15", "Capinha Celular Silicone", "USB-C Cable 1m", "Tas Selempang Wanita",
            "Bàn phím cơ RGB ⌨️", "ชุดเครื่องนอน 6 ฟุต", "LED Desk Lamp", "Kaos Kaki 5 Pasang", "藍牙喇叭 Speaker"]
MODELS = [("", ""), ("ดำ Black", "BLK"), ("White,M", "WHT-M"), ("Đỏ / L", "RED-L"), ("128GB 藍色", "128-BLU"),
          ("Preto 42", "PRT-42")]
PAYMENT = ["Credit/Debit Card", "Cash on Delivery", "ShopeePay", "Online Banking", "SPayLater"]
# order_status -> weight; which statuses have been paid, picked up, have packages
STATUS_WEIGHTS = {"COMPLETED": 38, "SHIPPED": 14, "TO_CONFIRM_RECEIVE": 8, "READY_TO_SHIP": 10, "PROCESSED": 5,
                  "RETRY_SHIP": 1, "UNPAID": 6, "CANCELLED": 10, "IN_CANCEL": 3, "TO_RETURN": 3, "PENDING": 2}
PICKED_UP = {"COMPLETED", "SHIPPED", "TO_CONFIRM_RECEIVE", "TO_RETURN"}
PACKAGE_STATUS = {
    "COMPLETED": ["LOGISTICS_DELIVERY_DONE"], "SHIPPED": ["LOGISTICS_PICKUP_DONE"],
    "TO_CONFIRM_RECEIVE": ["LOGISTICS_DELIVERY_DONE"], "READY_TO_SHIP": ["LOGISTICS_READY", "LOGISTICS_NOT_START"],
    "PROCESSED": ["LOGISTICS_REQUEST_CREATED"], "RETRY_SHIP": ["LOGISTICS_PICKUP_RETRY"],
    "TO_RETURN": ["LOGISTICS_DELIVERY_FAILED"], "IN_CANCEL": ["LOGISTICS_READY", "LOGISTICS_REQUEST_CREATED"],
    "CANCELLED": ["LOGISTICS_REQUEST_CANCELED", "LOGISTICS_INVALID"], "PENDING": ["LOGISTICS_NOT_START"],
    "UNPAID": ["LOGISTICS_NOT_START"],
}
CANCEL = [("buyer", "BUYER_CANCELLED", "Need to change delivery address"), ("system", "UNPAID", ""),
          ("seller", "OUT_OF_STOCK", ""), ("buyer", "BUYER_CANCELLED", "Change of mind 改變主意")]
EPOCH = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def order_sn(rng, i, create_time):
    """YYMMDD + 8 characters, unique per i (the last 6 are i in base 36)."""
    tail = ""
    for _ in range(6):
        i, r = divmod(i, 36)
        tail = B36[r] + tail
    return datetime.fromtimestamp(create_time, timezone.utc).strftime("%y%m%d") + rng.choice(B36[10:]) + rng.choice(B36) + tail


def money(rng, decimals, lo, hi):
    if decimals == 0:
        return int(round(rng.uniform(lo, hi), -2)) or 100
    return round(rng.uniform(lo, hi), decimals)


def make_items(rng, decimals, price_range):
    n = rng.choices([1, 2, 3, 4, 5], weights=[45, 25, 15, 10, 5])[0]
    item_ids = rng.sample(range(100_000_000, 3_000_000_000), n)  # distinct: (order_item_id, item_id, model_id) is the line
    bundle = n >= 2 and rng.random() < 0.2
    bundle_size = rng.randint(2, n) if bundle else 0
    bundle_oid = item_ids[0] if bundle else 0
    bundle_promo = (rng.randrange(10**8, 10**9), rng.randrange(10**8, 10**9)) if bundle else (0, 0)
    items = []
    for k, item_id in enumerate(item_ids):
        in_bundle = k < bundle_size
        model_name, model_sku = rng.choice(MODELS)
        model_id = rng.randrange(10**10, 10**12) if model_name else 0
        price = money(rng, decimals, price_range[0] / 2, price_range[1] / 3)
        add_on = not in_bundle and k > 0 and rng.random() < 0.1
        discounted = 0 if in_bundle else (round(price * rng.choice([1, 1, 1, 0.9, 0.8]), decimals) if decimals else
                                          int(price * rng.choice([1, 1, 1, 0.9, 0.8])))
        items.append({
            "item_id": item_id,
            "item_name": rng.choice(PRODUCTS),
            "item_sku": f"SKU-{item_id % 100000:05d}" if rng.random() < 0.5 else "",
            "model_id": model_id,
            "model_name": model_name,
            "model_sku": model_sku,
            "model_quantity_purchased": rng.choices([1, 2, 3, 5], weights=[70, 20, 7, 3])[0],
            "model_original_price": price,
            "model_discounted_price": discounted,
            "wholesale": False,
            "weight": round(rng.uniform(0.05, 5.0), 2),
            "add_on_deal": add_on,
            "main_item": False,
            "add_on_deal_id": rng.randrange(10**6, 10**7) if add_on else 0,
            "promotion_type": "bundle_deal" if in_bundle else ("add_on_deal_sub" if add_on else ""),
            "promotion_id": bundle_promo[0] if in_bundle else (rng.randrange(10**8, 10**9) if add_on else 0),
            "order_item_id": bundle_oid if in_bundle else item_id,
            "promotion_group_id": bundle_promo[1] if in_bundle else 0,
            "image_info": {"image_url": f"https://cf.shopee.sg/file/{rng.getrandbits(128):032x}_tn"},
            "product_location_id": ["IDL", "IDG"] if rng.random() < 0.3 else ["IDL"],
        })
    add_on_ids = [it["add_on_deal_id"] for it in items if it["add_on_deal"]]
    if add_on_ids and not items[0]["add_on_deal"] and items[0]["promotion_type"] != "bundle_deal":
        items[0].update(main_item=True, add_on_deal=True, add_on_deal_id=add_on_ids[0], promotion_type="add_on_deal_main")
    return items


def make_order(rng, i):
    region = rng.choices(list(MARKET_WEIGHTS), weights=list(MARKET_WEIGHTS.values()))[0]
    currency, decimals, price_range, carriers, places = MARKETS[region]
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    create_time = EPOCH + rng.randrange(0, 365 * 86400)
    cod = rng.random() < 0.15
    payment = "Cash on Delivery" if cod else rng.choice([p for p in PAYMENT if p != "Cash on Delivery"])
    unpaid = status in ("UNPAID", "PENDING") or (status == "CANCELLED" and rng.random() < 0.5)
    pay_time = None if unpaid or cod and status not in ("COMPLETED", "TO_CONFIRM_RECEIVE") else create_time + rng.randint(5, 7200)
    days_to_ship = rng.choice([2, 3, 3, 3, 5, 7])
    ship_by_date = create_time + days_to_ship * 86400
    picked_up = status in PICKED_UP
    pickup_done_time = create_time + rng.randint(3600, days_to_ship * 86400) if picked_up else 0
    if cod and pay_time is not None:  # COD: paid on delivery, after pickup (providers.md 6.2)
        pay_time = pickup_done_time + rng.randint(86400, 6 * 86400)
    items = make_items(rng, decimals, price_range)
    carrier = rng.choice(carriers)
    split = len(items) >= 2 and status not in ("UNPAID", "CANCELLED", "PENDING") and rng.random() < 0.12
    has_package = status not in ("UNPAID", "PENDING") and not (status == "CANCELLED" and rng.random() < 0.7)
    packages = []
    if has_package:
        groups = [items[:1], items[1:]] if split else [items]
        for group in groups:
            pkg_status = rng.choice(PACKAGE_STATUS[status])
            if split and status == "SHIPPED" and rng.random() < 0.5:
                pkg_status = "LOGISTICS_READY"
            packages.append({
                "package_number": f"OFG{rng.randrange(10**13, 10**14)}{i % 1000:03d}",
                "logistics_status": pkg_status,
                "shipping_carrier": carrier,
                "item_list": [{"item_id": it["item_id"], "model_id": it["model_id"],
                               **({"product_location_id": "IDL"} if rng.random() < 0.5 else {})} for it in group],
            })
    subtotal = sum((it["model_discounted_price"] or it["model_original_price"]) * it["model_quantity_purchased"]
                   for it in items)
    est_fee = money(rng, decimals, price_range[0], price_range[0] * 8)
    confirmed = picked_up and rng.random() < 0.7
    total = round(subtotal + est_fee, decimals) if decimals else int(subtotal + est_fee)
    cancel_by, cancel_reason, buyer_reason = rng.choice(CANCEL) if status in ("CANCELLED", "IN_CANCEL") else ("", "", "")
    town, district, city, state, zipcode, address = rng.choice(places)
    k = rng.randrange(len(NAMES))
    update_time = max(create_time, pay_time or 0, pickup_done_time) + rng.randint(60, 5 * 86400)
    note = rng.random() < 0.05
    dropship = rng.random() < 0.03
    return {
        "checkout_shipping_carrier": None,
        "reverse_shipping_fee": 0,
        "actual_shipping_fee": money(rng, decimals, price_range[0], price_range[0] * 8) if confirmed else None,
        "actual_shipping_fee_confirmed": confirmed,
        "buyer_cancel_reason": buyer_reason,
        "buyer_cpf_id": f"***.***.{rng.randrange(100, 999)}-**" if region == "BR" else None,
        "buyer_user_id": rng.randrange(10**5, 10**9),
        "buyer_username": USERNAMES[k],
        "cancel_by": cancel_by,
        "cancel_reason": cancel_reason,
        "cod": cod,
        "create_time": create_time,
        "currency": currency,
        "days_to_ship": days_to_ship,
        "dropshipper": "Toko Kirim 📦" if dropship else "",
        "dropshipper_phone": f"******{rng.randrange(10, 99)}" if dropship else "",
        "estimated_shipping_fee": est_fee,
        "fulfillment_flag": rng.choice(["fulfilled_by_local_seller"] * 8 + ["fulfilled_by_shopee", "fulfilled_by_cb_seller"]),
        "goods_to_declare": False,
        "invoice_data": None,
        "item_list": items,
        "message_to_seller": rng.choice(["Please pack carefully 🙏", "請小心包裝", "Giao giờ hành chính"]) if rng.random() < 0.08 else "",
        "note": "VIP ★ ship first" if note else "",
        "note_update_time": update_time - 30 if note else 0,
        "order_chargeable_weight_gram": int(sum(it["weight"] * it["model_quantity_purchased"] for it in items) * 1000),
        "order_sn": order_sn(rng, i, create_time),
        "order_status": status,
        "package_list": packages,
        "pay_time": pay_time,
        "payment_method": payment,
        "pickup_done_time": pickup_done_time,
        "recipient_address": {
            "name": NAMES[k],
            "phone": f"******{rng.randrange(10, 99)}",
            "town": town,
            "district": district,
            "city": city,
            "state": state,
            "region": region,
            "zipcode": zipcode,
            "full_address": address,
        },
        "region": region,
        "ship_by_date": ship_by_date,
        "shipping_carrier": carrier,
        "split_up": split,
        "total_amount": total,
        "update_time": update_time,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    counts = {"orders": args.orders, "replies": 0, "order_items": 0, "packages": 0, "cancelled": 0}
    with open(args.out, "w", encoding="utf-8") as f:
        for start in range(0, args.orders, BATCH):
            orders = [make_order(rng, i) for i in range(start, min(start + BATCH, args.orders))]
            for o in orders:
                counts["order_items"] += len(o["item_list"])
                counts["packages"] += len(o["package_list"])
                counts["cancelled"] += o["order_status"] == "CANCELLED"
            reply = {"request_id": f"{rng.getrandbits(128):032x}", "error": "", "message": "",
                     "response": {"order_list": orders}, "warning": []}
            f.write(json.dumps(reply, ensure_ascii=False, separators=(",", ":")) + "\n")
            counts["replies"] += 1
    meta = {**counts, "seed": args.seed}
    with open(args.out + ".meta.json", "w") as f:
        json.dump(meta, f)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
