"""Example Post's API on loopback, for its tests and ``shipetl sandbox``: the fixture pages behind the token."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIXTURES = Path(__file__).parent / "fixtures"
PAGES = {None: "parcels_first.json", "p2": "parcels_last.json"}
DEFAULT_TOKENS = ("example-token",)


def create_app(settings) -> Starlette:
    tokens = set(getattr(settings, "extra", {}).get("example_tokens", DEFAULT_TOKENS))

    async def parcels(request: Request) -> Response:
        if request.headers.get("x-example-token") not in tokens:
            return Response((FIXTURES / "error_401.json").read_bytes(), 401, media_type="application/json")
        page = PAGES.get(request.query_params.get("after"))
        if page is None:
            return Response((FIXTURES / "error_400.json").read_bytes(), 400, media_type="application/json")
        return Response((FIXTURES / page).read_bytes(), media_type="application/json")

    return Starlette(routes=[Route("/v2/parcels", parcels, methods=["GET"])])
