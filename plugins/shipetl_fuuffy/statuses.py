"""Fuuffy's status vocabularies as data: order codes, SF Express opCodes, Chinese status text, courier names.

Sources: providers.md 4.5 and 6.4. The order-code and keyword tables are GUESSes of this project; the SF
opCodes were read from real SF route samples (3P). Mapping SQL is generated from these tables, so a
correction is one edit here.
"""

from __future__ import annotations

# Namespaces under which the tables are registered with core (``status_of(namespace, code)``).
ORDER_NAMESPACE = "fuuffy.order"
SF_EXPRESS = "sf_express"

# Order status code (list: ``order_status``, single order: ``status``; seen lower-case too) ->
# (parcel status it implies while the order has no tracking data, final).
ORDER_STATUS_CODES: dict[str, tuple[str, bool]] = {
    "DRAFT": ("pending", False),
    "PENDING_CONFIRM": ("pending", False),
    "PENDING_PROCESSING": ("pending", False),
    "PROCESSING": ("pending", False),
    "READY_TO_SHIP": ("info_received", False),
    "PENDING_PICKUP": ("info_received", False),
    "PICKUP_COMPLETED": ("in_transit", False),
    "IN_TRANSIT": ("in_transit", False),
    "DELIVERED": ("delivered", True),
    "COMPLETED": ("delivered", True),
    "CANCELLED": ("exception", True),
}
# Order statuses that change the ship-by obligation (Provider.order_states, read by the analytics marts).
ORDER_STATES = {"CANCELLED": "cancelled"}

# SF Express route opCode -> (canonical status, final). Codes whose meaning nobody has confirmed map to
# ``unknown`` on purpose (kept raw, not counted as unmapped); a code missing here is counted.
SF_OPCODES: dict[str, tuple[str, bool]] = {
    "50": ("in_transit", False), "54": ("in_transit", False),
    **{code: ("in_transit", False) for code in ("30", "31", "36", "501", "407", "3036", "3137", "130")},
    "44": ("out_for_delivery", False), "204": ("out_for_delivery", False),
    "70": ("failed_attempt", False),
    "80": ("delivered", True),
    "8000": ("delivered", True),
    "631": ("returned", True),
    **{code: ("unknown", False) for code in ("33", "99", "123", "125", "607", "648")},
}
# Post-delivery notes: stored as events, never the scan that sets a parcel's status.
SF_INFORMATIONAL = ("8000",)
# A "signed for" (80) whose message names a self-service locker was left there, not handed over (6.4).
SF_LOCKER_MARKERS = ("顺丰自助柜",)
SF_LOCKER_STATUS = "available_for_pickup"
# The order scans of one parcel go through; two scans in the same second sort by this (arrive before
# depart, 54 may precede 50), never by array position. Codes not listed sort after, by number.
SF_OPCODE_SEQUENCE = ("54", "50", "30", "36", "31", "3036", "3137", "501", "407", "130", "44", "204", "70",
                      "80", "8000", "631")

# Tracking ``order_status`` is display text in Chinese (traditional for HK, simplified too). A keyword
# found in the text gives its status; the longest keyword found wins. Value: (status, final).
ORDER_TEXT_KEYWORDS: dict[str, tuple[str, bool]] = {
    "列印及安排取件": ("info_received", False),
    "草稿": ("pending", False), "待": ("pending", False),
    "已取件": ("in_transit", False), "已收件": ("in_transit", False), "收取": ("in_transit", False),
    "運送中": ("in_transit", False), "运输中": ("in_transit", False),
    "轉運": ("in_transit", False), "转运": ("in_transit", False),
    "派送": ("out_for_delivery", False), "派件": ("out_for_delivery", False),
    "自取": ("available_for_pickup", False), "待取": ("available_for_pickup", False),
    "簽收": ("delivered", True), "签收": ("delivered", True), "送達": ("delivered", True), "送达": ("delivered", True),
    "已退回": ("returned", True),
    "退回": ("exception", False), "退件": ("exception", False), "異常": ("exception", False),
    "异常": ("exception", False), "取消": ("exception", True),
}

# Statuses of the tracking order_status text that do not speak for a scan: a courier scan beside them shows
# the text lagging behind (seed 001: opCode 50 "collected" beside 列印及安排取件). Any other status the text
# gives is taken by the reply's newest scan when no code table places that scan (mapping.py).
REPLY_TEXT_BEHIND_SCANS = ("pending", "info_received")

# ``shipping_provider`` / ``courier_name`` as Fuuffy spells them (case-insensitive) -> carrier code.
# A name not listed becomes its lower-case words joined by ``_``.
COURIER_CARRIER_CODES: dict[str, str] = {
    "sf express": SF_EXPRESS,
    "sf": SF_EXPRESS,
    "顺丰速运": SF_EXPRESS,
    "順豐速運": SF_EXPRESS,
    "kerry express": "kerry_express",
    "hongkong post": "hongkong_post",
    "hong kong post": "hongkong_post",
    "zto express": "zto",
}
