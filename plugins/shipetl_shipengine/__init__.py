"""ShipStation API / ShipEngine: shipments discovered from labels, tracked until final."""

from shipetl import hookimpl

from .provider import ShipEngineProvider
from .statuses import LABEL_TRACKING_STATUSES, STATUS_CODES, STATUS_DETAIL_CODES, USPS_CODES


@hookimpl
def shipetl_api_version() -> int:
    return 1


@hookimpl
def register_providers(register) -> None:
    register(ShipEngineProvider)


@hookimpl
def register_status_maps(register) -> None:
    register("shipengine", STATUS_CODES)
    register("shipengine.detail", STATUS_DETAIL_CODES)
    register("shipengine.label", LABEL_TRACKING_STATUSES)
    register("usps", USPS_CODES)


@hookimpl
def register_sandboxes(register) -> None:
    from .sandbox import create_app

    register("shipengine", create_app)
