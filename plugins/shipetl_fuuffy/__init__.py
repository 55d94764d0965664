"""Fuuffy, a Hong Kong courier platform relaying SF Express and others: orders and their parcels' scans."""

from shipetl import hookimpl

from .provider import FuuffyProvider
from .statuses import ORDER_NAMESPACE, ORDER_STATUS_CODES, SF_EXPRESS, SF_OPCODES


@hookimpl
def shipetl_api_version() -> int:
    return 1


@hookimpl
def register_providers(register) -> None:
    register(FuuffyProvider)


@hookimpl
def register_status_maps(register) -> None:
    register(ORDER_NAMESPACE, ORDER_STATUS_CODES)
    register(SF_EXPRESS, SF_OPCODES)


@hookimpl
def register_sandboxes(register) -> None:
    from .sandbox import create_app

    register("fuuffy", create_app)
