"""Shopee's status words -> canonical statuses (providers.md 1.7, corrected by 6.2), as data.

Three namespaces, registered through ``register_status_maps``:

- ``shopee.logistics``: a package's ``logistics_status`` (enum LogisticsStatus), used for a shipment
  that has no tracking events yet.
- ``shopee.tracking``: an event's ``tracking_info[].logistics_status``. Real payloads carry
  TrackingLogisticsStatus names while the docs point at LogisticsStatus; the two sets do not collide,
  so this namespace holds both.
- ``shopee.order``: ``order_status`` (enum OrderStatus), the parcel status an order implies while it
  has no package data.

Values are ``(canonical, final)``. ``LOGISTICS_DELIVERY_FAILED`` is not final: events go on to
``RETURN_STARTED`` ... ``RETURNED`` while the package keeps that status (providers.md 6.2).
"""

from __future__ import annotations

StatusTable = dict[str, tuple[str, bool]]


def _table(groups: dict[tuple[str, bool], str]) -> StatusTable:
    return {code: key for key, codes in groups.items() for code in codes.split()}


LOGISTICS_STATUS: StatusTable = _table({
    ("pending", False): "LOGISTICS_NOT_START LOGISTICS_PENDING_ARRANGE LOGISTICS_READY",
    ("info_received", False): "LOGISTICS_REQUEST_CREATED LOGISTICS_PICKUP_RETRY",
    ("in_transit", False): "LOGISTICS_PICKUP_DONE",
    ("delivered", True): "LOGISTICS_DELIVERY_DONE",
    ("exception", False): "LOGISTICS_DELIVERY_FAILED",
    ("exception", True): "LOGISTICS_PICKUP_FAILED LOGISTICS_LOST LOGISTICS_COD_REJECTED LOGISTICS_INVALID "
                         "LOGISTICS_REQUEST_CANCELED FULFILMENT_DELIVERY_FAILED",
    ("unknown", False): "LOGISTICS_UNKNOWN",
})

TRACKING_LOGISTICS_STATUS: StatusTable = _table({
    ("pending", False): "INITIAL ORDER_INIT ORDER_SUBMITTED ORDER_FINALIZED",
    ("info_received", False): "ORDER_CREATED PICKUP_REQUESTED PICKUP_PENDING PICKUP_RETRY UPDATE UPDATE_SUBMITTED "
                              "UPDATE_CREATED",
    ("in_transit", False): "PICKED_UP DELIVERY_PENDING",
    ("delivered", True): "DELIVERED",
    ("failed_attempt", False): "FAILED_DELIVERED",
    ("exception", False): "RETURN_STARTED RETURN_INITIATED RETURN_PENDING TIMEOUT",
    ("exception", True): "LOST CANCEL CANCEL_CREATED CANCELED FAILED_ORDER_INIT FAILED_ORDER_SUBMITTED "
                         "FAILED_ORDER_CREATED FAILED_PICKUP_REQUESTED FAILED_PICKED_UP FAILED_UPDATE_SUBMITTED "
                         "FAILED_UPDATE_CREATED FAILED_RETURN_STARTED FAILED_RETURNED FAILED_CANCEL_CREATED "
                         "FAILED_CANCELED",
    ("returned", True): "RETURNED",
    ("expired", True): "EXPIRED",
})
TRACKING_STATUS: StatusTable = {**LOGISTICS_STATUS, **TRACKING_LOGISTICS_STATUS}

# IN_CANCEL implies no change of the parcel's status; a snapshot cannot know the previous one.
ORDER_STATUS: StatusTable = _table({
    ("pending", False): "UNPAID PENDING INVOICE_PENDING READY_TO_SHIP RETRY_SHIP",
    ("info_received", False): "PROCESSED",
    ("in_transit", False): "SHIPPED",
    ("delivered", True): "TO_CONFIRM_RECEIVE COMPLETED",
    ("exception", False): "TO_RETURN",
    ("exception", True): "CANCELLED",
    ("unknown", False): "IN_CANCEL",
})
# Order statuses that change the ship-by obligation (Provider.order_states, read by the analytics marts).
ORDER_STATES = {"CANCELLED": "cancelled", "IN_CANCEL": "cancel_requested", "UNPAID": "awaiting_payment"}

NAMESPACES: dict[str, StatusTable] = {
    "shopee.logistics": LOGISTICS_STATUS,
    "shopee.tracking": TRACKING_STATUS,
    "shopee.order": ORDER_STATUS,
}
