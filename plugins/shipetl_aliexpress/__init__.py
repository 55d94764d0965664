"""AliExpress dropshipping: order snapshots and parcel tracking for order ids the seller supplies."""

from shipetl import hookimpl

from .provider import AliExpressProvider
from .statuses import LOGISTICS_NAMESPACE, LOGISTICS_STATUSES, ORDER_NAMESPACE, ORDER_STATUSES


@hookimpl
def shipetl_api_version() -> int:
    return 1


@hookimpl
def register_providers(register) -> None:
    register(AliExpressProvider)


@hookimpl
def register_status_maps(register) -> None:
    register(LOGISTICS_NAMESPACE, LOGISTICS_STATUSES)
    register(ORDER_NAMESPACE, ORDER_STATUSES)


@hookimpl
def register_sandboxes(register) -> None:
    from .sandbox import create_app

    register("aliexpress", create_app)
