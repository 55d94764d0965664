"""ShipEngine status codes and status detail codes -> canonical statuses (providers.md 3.5)."""

from __future__ import annotations

# status_code: (canonical, final). EX is final only for some details, so not by itself.
STATUS_CODES = {
    "UN": ("unknown", False),
    "NY": ("pending", False),
    "AC": ("in_transit", False),
    "IT": ("in_transit", False),
    "AT": ("failed_attempt", False),
    "DE": ("delivered", True),
    "SP": ("available_for_pickup", False),
    "EX": ("exception", False),
}
# What a bare per-event status_code (no status_detail_code) says that a carrier's own code table may refine
# (mapping.py, event status step 2): AC and IT are "in transit, refined by detail" (providers.md 3.5) and UN
# is no answer at all. NY, AT, DE, SP and EX name an outcome, which a carrier table never overrules.
REFINABLE_BY_CARRIER = ("in_transit", "unknown")

_DETAILS = {
    "info_received": "SHIPMENT_CREATED AWAITING_PICKUP_DROP_OFF ELEC_ADVICE_RECD_BY_CARRIER NOT_YET_RECEIVED_BY_CARRIER",
    "in_transit": "DROPPED_OFF PICKED_UP RECEIVED_BY_CARRIER RECD_BY_CARRIER_NO_ELEC_ADVICE IN_TRANSIT HUB_SCAN_IN "
                  "HUB_SCAN_OUT HUB_PROCESSING RECEIVED_LOCAL_DELIVERY_DEPOT CUSTOMS_PROCESSING CUSTOMS_CLEARED "
                  "SUB_CONTRACTOR_EVENT SUB_CONTRACTOR_RECEIVED PARCEL_REDIRECTED PARCEL_REPACKED PARCEL_OVER_LABELLED "
                  "PARCEL_UPDATE_NOTIFICATION INFORMATION DELIVERY_SCHEDULED DELIVERY_ARRANGED_WITH_RECIPIENT DELIVERY_RESCHEDULED",
    "out_for_delivery": "OUT_FOR_DELIVERY",
    "failed_attempt": "ATTEMPTED_DELIVERY CUSTOMER_CARDED NO_ACCESS_TO_RECIPIENTS_ADDRESS",
    "available_for_pickup": "AWAITING_COLLECTION_FROM_PICKUP_POINT COLLECT_AT_LOCAL_PO CUSTOMER_TO_COLLECT_FROM_CARRIER",
    "delivered": "DELIVERED DELIVERED_TO_RECEPTION DELIVERED_SPECIFIED_SAFE_PLACE DELIVERED_TO_ALTERNATIVE_DELIVERY_LOCATION "
                 "DELIVERED_TO_NEIGHBOUR DELIVERED_TO_PO_BOX DELIVERED_DAMAGED DELIVERED_IN_PART "
                 "PARCEL_COLLECTED_FROM_PICKUP_POINT PROOF_OF_DELIVERY POST_TRANSIT_STATUS COD_AMOUNT_PAID",
    "exception": "ATTEMPTED_DELIVERY_FINAL PICKUP_FAILED PARCEL_DAMAGED ADDRESS_QUERY CARRIER_DELAYS DELAYED_NOT_CARRIER "
                 "HELD_BY_CARRIER HELD_BY_CARRIER_FOR_CLEARANCE_PRE_PROCESSING HELD_BY_CUSTOMS HELD_BY_EXPORT_CUSTOMS "
                 "HELD_BY_IMPORT_CUSTOMS INCORRECT_DECLARATION MISROUTED COD_AMOUNT_NOT_PAID CUSTOMER_IDENTIFICATION_FAILED "
                 "CUSTOMER_MOVED HAZARDOUS_PROHIBITED NOT_COLLECTED_FROM_PICKUP_POINT NOT_DELIVERED REFUSED_BY_CUSTOMER "
                 "PARCEL_OUTSIDE_OF_SERVICE_CAPABILITY UNSPECIFIED_EXCEPTION RETURN_TO_SENDER",
    "unknown": "CARRIER_STATUS_NOT_MAPPED",
}
# Exceptions that end the parcel's story: lost, destroyed, cancelled.
FINAL_EXCEPTIONS = ("PARCEL_LOST", "PARCEL_DISPOSED", "CANCELLED", "NOT_DELIVERED_ADDRESSEE_DECEASED")

STATUS_DETAIL_CODES: dict[str, tuple[str, bool]] = {
    code: (status, status == "delivered") for status, codes in _DETAILS.items() for code in codes.split()
}
STATUS_DETAIL_CODES.update({code: ("exception", True) for code in FINAL_EXCEPTIONS})

# A label's coarse ``tracking_status`` (providers.md 3.5), for a tracking reply with no status_code at all: the
# spec's four values and the two more labels are seen with (delivered_to_service_point, and n/a for none).
LABEL_TRACKING_STATUSES = {
    "unknown": ("unknown", False),
    "in_transit": ("in_transit", False),
    "error": ("exception", False),
    "delivered": ("delivered", True),
    "delivered_to_service_point": ("available_for_pickup", False),
    "n/a": ("unknown", False),
}

# USPS scan codes as ShipEngine relays them in carrier_status_code (seed 004: 01 delivered, OF out for
# delivery, the seed's other scans in transit).
USPS_CODES = {
    "01": ("delivered", True),
    "OF": ("out_for_delivery", False),
    "03": ("in_transit", False),  # USPS picked up item
    "10": ("in_transit", False),  # arrived at USPS regional origin facility
    "NT": ("in_transit", False),  # in transit to next facility
    "07": ("in_transit", False),  # arrived at post office
}
