"""ShipEngine's and the carriers' facts the sandbox draws from: codes, texts, ids, URLs, places.

One module, so the tables that must be checked against providers.md 3 and 6.1 stay together; ``world.py``
builds the storylines and renders the payloads from them.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Provider facts (providers.md 3 and 6.1) -----------------------------------------------------

LABEL_CARRIER_WEIGHTS = {"usps": 25, "stamps_com": 15, "ups": 22, "fedex": 20, "dhl_express": 8, "ontrac": 10}
LABEL_CARRIER_IDS = {"usps": "se-1000101", "stamps_com": "se-1000102", "ups": "se-1000103",
                     "fedex": "se-1000104", "dhl_express": "se-1000105", "ontrac": "se-1000106"}
# Tracking replies carry an integer carrier_id and name the carrier that moves the parcel.
TRACKING_CARRIER_IDS = {"usps": 1, "ups": 3, "fedex": 4, "fedex_walleted": 4, "dhl_express": 11, "ontrac": 40}
SERVICES = {
    "usps": ("usps_ground_advantage", "usps_priority_mail", "usps_first_class_mail"),
    "stamps_com": ("usps_ground_advantage", "usps_priority_mail"),
    "ups": ("ups_ground", "ups_2nd_day_air", "ups_next_day_air_saver"),
    "fedex": ("fedex_ground", "fedex_home_delivery", "fedex_2day"),
    "dhl_express": ("dhl_express_worldwide", "dhl_express_domestic"),
    "ontrac": ("ontrac_ground",),
}
TRACKING_URLS = {
    "usps": "https://tools.usps.com/go/TrackConfirmAction.action?tLabels={}",
    "ups": "https://www.ups.com/track?loc=en_US&tracknum={}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
    "dhl_express": "https://www.dhl.com/en/express/tracking.html?AWB={}&brand=DHL",
    "ontrac": "https://www.ontrac.com/tracking/?number={}",
}
STATUS_DESCRIPTIONS = {"AC": "Accepted", "IT": "In Transit", "DE": "Delivered", "EX": "Exception", "UN": "Unknown",
                       "AT": "Delivery Attempt", "NY": "Not Yet In System",
                       "SP": "Delivered To The Collection Location"}
LABEL_TRACKING_STATUS = {"AC": "in_transit", "IT": "in_transit", "NY": "in_transit", "AT": "in_transit",
                         "DE": "delivered", "EX": "error", "UN": "unknown", "SP": "delivered_to_service_point"}
DETAIL_DESCRIPTIONS = {
    "SHIPMENT_CREATED": "Shipment created", "AWAITING_PICKUP_DROP_OFF": "Awaiting pickup or drop off",
    "NOT_YET_RECEIVED_BY_CARRIER": "Not yet received by carrier", "PICKED_UP": "Picked up",
    "HUB_SCAN_IN": "Arrived at hub", "HUB_SCAN_OUT": "Departed hub", "IN_TRANSIT": "In transit",
    "RECEIVED_LOCAL_DELIVERY_DEPOT": "Received at local delivery depot", "CUSTOMS_PROCESSING": "Customs processing",
    "CARRIER_DELAYS": "Carrier delays", "OUT_FOR_DELIVERY": "Out for delivery", "DELIVERED": "Delivered",
    "DELIVERED_TO_NEIGHBOUR": "Delivered to neighbour",
    "DELIVERED_SPECIFIED_SAFE_PLACE": "Delivered to specified safe place",
    "ATTEMPTED_DELIVERY": "Attempted delivery",
    "AWAITING_COLLECTION_FROM_PICKUP_POINT": "Awaiting collection from pickup point",
    "RETURN_TO_SENDER": "Return to sender", "PARCEL_LOST": "Parcel lost", "HELD_BY_CUSTOMS": "Held by customs",
    "CARRIER_STATUS_NOT_MAPPED": "Carrier status not mapped",
}
# Storyline step -> (status_code, status_detail_code) ShipEngine would put on the event.
KINDS = {
    "created": ("AC", "SHIPMENT_CREATED"), "awaiting_dropoff": ("AC", "AWAITING_PICKUP_DROP_OFF"),
    "picked_up": ("IT", "PICKED_UP"), "hub_in": ("IT", "HUB_SCAN_IN"), "hub_out": ("IT", "HUB_SCAN_OUT"),
    "in_transit": ("IT", "IN_TRANSIT"), "nt": ("IT", "IN_TRANSIT"),
    "depot": ("IT", "RECEIVED_LOCAL_DELIVERY_DEPOT"), "customs": ("IT", "CUSTOMS_PROCESSING"),
    "delay": ("EX", "CARRIER_DELAYS"), "out_for_delivery": ("IT", "OUT_FOR_DELIVERY"),
    "delivered": ("DE", "DELIVERED"), "delivered_neighbour": ("DE", "DELIVERED_TO_NEIGHBOUR"),
    "delivered_safe_place": ("DE", "DELIVERED_SPECIFIED_SAFE_PLACE"), "attempted": ("AT", "ATTEMPTED_DELIVERY"),
    "pickup_point": ("SP", "AWAITING_COLLECTION_FROM_PICKUP_POINT"),
    "return_to_sender": ("EX", "RETURN_TO_SENDER"), "lost": ("EX", "PARCEL_LOST"),
    "held_customs": ("EX", "HELD_BY_CUSTOMS"), "unmapped": ("UN", "CARRIER_STATUS_NOT_MAPPED"),
}
# Carrier family -> storyline step -> (carrier event code, description).
CARRIER_EVENTS: dict[str, dict[str, tuple[str, str]]] = {
    "usps": {
        "created": ("GX", "Shipping Label Created, USPS Awaiting Item"),
        "awaiting_dropoff": ("MA", "Pre-Shipment Info Sent to USPS, USPS Awaiting Item"),
        "picked_up": ("03", "USPS picked up item"), "hub_in": ("10", "Arrived at USPS Regional Facility"),
        "hub_out": ("T1", "Departed USPS Regional Facility"), "in_transit": ("A1", "Arrived at USPS Facility"),
        "nt": ("NT", "In Transit to Next Facility"), "depot": ("07", "Arrived at Post Office"),
        "customs": ("CP", "Customs Clearance"), "delay": ("TL", "Moving Through Network"),
        "out_for_delivery": ("OF", "Out for Delivery"), "delivered": ("01", "Delivered, In/At Mailbox"),
        "delivered_neighbour": ("01", "Delivered, Left with Individual"),
        "delivered_safe_place": ("01", "Delivered, Front Door/Porch"),
        "attempted": ("02", "Notice Left (No Authorized Recipient Available)"),
        "pickup_point": ("17", "Available for Pickup"), "return_to_sender": ("09", "Return to Sender Processed"),
        "lost": ("53", "Missing Mail Search Closed"), "held_customs": ("CH", "Held in Customs"),
        "unmapped": ("XX", "Status Not Available"),
    },
    "ups": {
        "created": ("MP", "Shipper created a label, UPS has not received the package yet."),
        "awaiting_dropoff": ("MP", "Drop-Off At UPS Access Point Pending"), "picked_up": ("OR", "Pickup Scan"),
        "hub_in": ("AR", "Arrived at Facility"), "hub_out": ("DP", "Departed from Facility"),
        "in_transit": ("IP", "Processing at UPS Facility"), "depot": ("LC", "Arrived at Delivery Facility"),
        "customs": ("CR", "Import Scan"), "delay": ("WD", "Weather Delay"),
        "out_for_delivery": ("OT", "Out For Delivery Today"), "delivered": ("KB", "Delivered"),
        "delivered_neighbour": ("KB", "Delivered to Neighbor"),
        "delivered_safe_place": ("FS", "Delivered, Left at Front Door"),
        "attempted": ("48", "The receiver was not available for delivery."),
        "pickup_point": ("ZP", "Delivered to UPS Access Point. Awaiting Customer Pickup"),
        "return_to_sender": ("RS", "Returning to Sender"), "lost": ("LP", "Package Lost"),
        "held_customs": ("CH", "Held by Customs"), "unmapped": ("ZZ", "Status Unavailable"),
    },
    "fedex": {
        "created": ("OC", "Shipment information sent to FedEx"), "awaiting_dropoff": ("OC", "Label created"),
        "picked_up": ("PU", "Picked up"), "hub_in": ("AR", "Arrived at FedEx location"),
        "hub_out": ("DP", "Departed FedEx location"), "in_transit": ("IT", "In transit"),
        "depot": ("AR", "At local FedEx facility"), "customs": ("CC", "International shipment release - Import"),
        "delay": ("SE", "Shipment exception"), "out_for_delivery": ("OD", "On FedEx vehicle for delivery"),
        "delivered": ("DL", "Delivered"), "delivered_neighbour": ("DL", "Delivered to neighbor"),
        "delivered_safe_place": ("DL", "Left at front door"),
        "attempted": ("DE", "Customer not available or business closed"),
        "pickup_point": ("HL", "Ready for pickup at FedEx location"), "return_to_sender": ("RS", "Return to shipper"),
        "lost": ("LO", "Package lost"), "held_customs": ("CD", "Clearance delay"),
        "unmapped": ("XX", "Status unavailable"),
    },
    "dhl_express": {
        "created": ("SA", "Shipment information received"), "awaiting_dropoff": ("SA", "Awaiting drop off"),
        "picked_up": ("PU", "Shipment picked up"), "hub_in": ("AF", "Arrived at DHL Sort Facility"),
        "hub_out": ("DF", "Departed Facility"), "in_transit": ("PL", "Processed at"),
        "depot": ("AR", "Arrived at Delivery Facility"), "customs": ("CC", "Customs clearance status updated"),
        "delay": ("MD", "Missed delivery cycle"), "out_for_delivery": ("WC", "With delivery courier"),
        "delivered": ("OK", "Delivered"), "delivered_neighbour": ("OK", "Delivered - Signed for by neighbour"),
        "delivered_safe_place": ("OK", "Delivered - Left at safe place"),
        "attempted": ("NH", "Delivery attempted; recipient not home"),
        "pickup_point": ("SC", "Available for collection at DHL ServicePoint"),
        "return_to_sender": ("RR", "Returning to shipper"), "lost": ("LS", "Shipment lost"),
        "held_customs": ("CH", "Held by customs"), "unmapped": ("XX", "Status unavailable"),
    },
    "ontrac": {
        "created": ("OS", "Order Created"), "awaiting_dropoff": ("OS", "Awaiting package"),
        "picked_up": ("PU", "Package picked up"), "hub_in": ("PS", "Package received at facility"),
        "hub_out": ("DP", "Departed facility"), "in_transit": ("IT", "In transit"),
        "depot": ("PS", "Arrived at delivery facility"), "customs": ("CC", "Customs processing"),
        "delay": ("DY", "Delayed"), "out_for_delivery": ("OD", "Out for delivery"), "delivered": ("DL", "Delivered"),
        "delivered_neighbour": ("DL", "Delivered to neighbor"), "delivered_safe_place": ("DL", "Delivered, front door"),
        "attempted": ("AT", "Delivery attempted"), "pickup_point": ("HP", "Held for pickup"),
        "return_to_sender": ("RS", "Return to sender"), "lost": ("LO", "Package lost"),
        "held_customs": ("CH", "Held by customs"), "unmapped": ("XX", "Unknown"),
    },
}


@dataclass(frozen=True)
class Place:
    city: str
    state: str
    postal: str
    zone: str
    lat: float
    lon: float


PLACES = tuple(Place(*p) for p in (
    ("NEW YORK", "NY", "10001", "America/New_York", 40.7506, -73.9972),
    ("BOSTON", "MA", "02118", "America/New_York", 42.3389, -71.0723),
    ("ATLANTA", "GA", "30303", "America/New_York", 33.7527, -84.3915),
    ("MIAMI", "FL", "33126", "America/New_York", 25.7804, -80.3030),
    ("PHILADELPHIA", "PA", "19104", "America/New_York", 39.9597, -75.1968),
    ("LOUISVILLE", "KY", "40209", "America/New_York", 38.1860, -85.7404),
    ("INDIANAPOLIS", "IN", "46241", "America/New_York", 39.7281, -86.2542),
    ("SECAUCUS", "NJ", "07094", "America/New_York", 40.7895, -74.0565),
    ("CHICAGO", "IL", "60607", "America/Chicago", 41.8748, -87.6514),
    ("DALLAS", "TX", "75201", "America/Chicago", 32.7876, -96.7994),
    ("MEMPHIS", "TN", "38118", "America/Chicago", 35.0439, -89.9316),
    ("SARCOXIE", "MO", "64862", "America/Chicago", 37.0776, -94.1258),
    ("KANSAS CITY", "MO", "64120", "America/Chicago", 39.1225, -94.5200),
    ("HOUSTON", "TX", "77032", "America/Chicago", 29.9366, -95.3327),
    ("MINNEAPOLIS", "MN", "55401", "America/Chicago", 44.9850, -93.2700),
    ("DENVER", "CO", "80216", "America/Denver", 39.7836, -104.9700),
    ("SALT LAKE CITY", "UT", "84104", "America/Denver", 40.7522, -111.9460),
    ("ALBUQUERQUE", "NM", "87102", "America/Denver", 35.0820, -106.6480),
    ("BOISE", "ID", "83705", "America/Denver", 43.5870, -116.2170),
    ("PHOENIX", "AZ", "85043", "America/Phoenix", 33.4300, -112.2000),
    ("TUCSON", "AZ", "85706", "America/Phoenix", 32.1300, -110.9300),
    ("MESA", "AZ", "85201", "America/Phoenix", 33.4350, -111.8500),
    ("LOS ANGELES", "CA", "90021", "America/Los_Angeles", 34.0290, -118.2380),
    ("ONTARIO", "CA", "91761", "America/Los_Angeles", 34.0400, -117.5900),
    ("SAN FRANCISCO", "CA", "94124", "America/Los_Angeles", 37.7300, -122.3900),
    ("SEATTLE", "WA", "98108", "America/Los_Angeles", 47.5400, -122.3100),
    ("LAS VEGAS", "NV", "89118", "America/Los_Angeles", 36.0800, -115.2000),
    ("PORTLAND", "OR", "97218", "America/Los_Angeles", 45.5700, -122.6000),
))
