"""Example Post: parcels and their scans, epoch-second times, token header. Hook implementations only."""

from shipetl import API_VERSION, hookimpl

from .provider import STATUS_CODES, ExampleProvider


@hookimpl
def shipetl_api_version() -> int:
    return API_VERSION


@hookimpl
def register_providers(register) -> None:
    register(ExampleProvider)


@hookimpl
def register_status_maps(register) -> None:
    register("example", STATUS_CODES)


@hookimpl
def register_sandboxes(register) -> None:
    from .server import create_app

    register("example", create_app)
