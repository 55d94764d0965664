"""Shopee Open Platform v2: orders, lines, packages and scans of many shops under one partner app."""

from shipetl import hookimpl

from .provider import ShopeeProvider
from .statuses import NAMESPACES


@hookimpl
def shipetl_api_version() -> int:
    return 1


@hookimpl
def register_providers(register) -> None:
    register(ShopeeProvider)


@hookimpl
def register_status_maps(register) -> None:
    for namespace, table in NAMESPACES.items():
        register(namespace, table)


@hookimpl
def register_sandboxes(register) -> None:
    from .sandbox import create_app

    register("shopee", create_app)
