"""The AliExpress sandbox's gateway routes: ``/sync`` by ``method``, token create and refresh, both error layers.

Serves ``POST|GET /sync`` by ``method`` (``aliexpress.trade.ds.order.get``, ``aliexpress.ds.order.tracking.get``)
and ``POST /rest/auth/token/create|refresh``, checking what the gateway checks (providers.md 2.2-2.5, 2.9):
the app key, ``sign_method=sha256``, the timestamp (at most ``MAX_SKEW_S`` away), the uppercase HMAC sign
(API path prefix only on ``/rest``), and the session (``auth.py``). Replies are double-wrapped
(``<method>_response.result``) and fail the two AliExpress ways: ``error_response`` under HTTP 200
(``IncompleteSignature``, ``InvalidAppKey``, ``InvalidTimestamp``, ``IllegalAccessToken``, ``ApiCallLimit``)
and ``result.ret = false`` (``1001`` for an order with no tracking yet).

Knobs: ``SandboxSettings.extra`` ``aliexpress_orders`` (default 300 x scale) and ``aliexpress_throttle_every``
(every Nth ``/sync`` call answers ``ApiCallLimit``; default 0, off). Admin routes (never faulted):
``GET /aliexpress/_stats``, ``POST /aliexpress/_throttle`` ``{"every": N, "seconds": S}``,
``POST /aliexpress/_expire_tokens``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings

from .auth import AUTH_CODE, Gateway, _request_id
from .world import build_world

ORDER_GET = "aliexpress.trade.ds.order.get"
TRACKING_GET = "aliexpress.ds.order.tracking.get"
TOKEN_PATHS = ("/auth/token/create", "/auth/token/refresh")
GATEWAY_MESSAGES = {
    "IncompleteSignature": "The request signature does not conform to platform standards",
    "InvalidAppKey": "The specified App Key is invalid",
    "InvalidTimestamp": "The specified timestamp is invalid or outside the allowed window",
    "IllegalAccessToken": "The specified access token is invalid or expired",
    "MissingParameter": "A required parameter is missing",
    "InvalidApiPath": "The specified API path is invalid",
}


# --- the gateway --------------------------------------------------------------------------------

def _json(data: Any) -> Response:
    # The gateway answers HTTP 200 for its own errors too (providers.md 2.5, 3P).
    return Response(orjson.dumps(data), media_type="application/json;charset=UTF-8")


def _gateway_error(code: str, *, sub_code: str | None = None, msg: str | None = None, kind: str = "ISV") -> Response:
    body = {"type": kind, "code": code, "msg": msg or GATEWAY_MESSAGES.get(code, code), "request_id": _request_id()}
    if sub_code:
        body["sub_code"] = sub_code
    return _json({"error_response": body})


def _flat_error(code: str) -> Response:
    return _json({"type": "ISV", "code": code, "message": GATEWAY_MESSAGES.get(code, code), "request_id": _request_id()})


async def _params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method == "POST":
        params.update(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    return params


def create_app(settings: SandboxSettings) -> Starlette:
    """The AliExpress gateway app, mounted at ``/aliexpress`` by the sandbox server."""
    world = build_world(settings.seed, settings.scale, settings.extra.get("aliexpress_orders"))
    gateway = Gateway(int(settings.extra.get("aliexpress_throttle_every", 0)))

    def business(method: str, params: dict[str, str]) -> Response:
        wrap = method.replace(".", "_") + "_response"
        if method == ORDER_GET:
            try:
                order_id = str(orjson.loads(params.get("single_order_query", ""))["order_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return _gateway_error("MissingParameter", msg="single_order_query.order_id is required")
            order = world.by_id.get(order_id)
            # Sandbox choice (the real reply for an unknown id is UNCONFIRMED): a business-layer miss.
            result = world.order_result(order) if order else {"ret": False, "code": "1004", "msg": "ORDER NOT EXIST"}
        else:
            if not params.get("ae_order_id") or not params.get("language"):
                return _gateway_error("MissingParameter", msg="ae_order_id and language are required")
            order = world.by_id.get(params["ae_order_id"])
            if order is None or not order.has_tracking:
                result = {"ret": False, "msg": "TRACKING DATA NOT FOUND", "code": "1001"}
            else:
                result = world.tracking_result(order)
        return _json({wrap: {"result": result, "request_id": _request_id()}})

    async def sync(request: Request) -> Response:
        params = await _params(request)
        refused = gateway.refused(params, "")
        if refused:
            gateway.stats[f"refused_{refused}"] += 1
            return _gateway_error(refused)
        if not gateway.session_ok(params.get("session") or params.get("access_token")):
            gateway.stats["refused_IllegalAccessToken"] += 1
            return _gateway_error("IllegalAccessToken")
        if gateway.throttled():
            return _gateway_error("ApiCallLimit", msg=f"App call limit exceeded. This ban will last for "
                                                      f"{gateway.throttle_seconds} more seconds")
        method = params.get("method", "")
        if method not in (ORDER_GET, TRACKING_GET):
            return _gateway_error("InvalidApiPath")
        gateway.stats[method] += 1
        return business(method, params)

    async def token(request: Request) -> Response:
        api_path = "/auth/token/" + request.path_params["action"]
        if api_path not in TOKEN_PATHS:
            return _flat_error("InvalidApiPath")
        params = await _params(request)
        refused = gateway.refused(params, api_path)
        if refused:
            gateway.stats[f"refused_{refused}"] += 1
            return _flat_error(refused)
        if api_path.endswith("create"):
            if params.get("code") != AUTH_CODE:
                return _json({"type": "ISV", "code": "InvalidCode", "message": "The authorization code is invalid",
                              "request_id": _request_id()})
        elif not gateway.spend_refresh(params.get("refresh_token", "")):
            return _json({"type": "ISV", "code": "IllegalRefreshToken", "message": "The refresh token is invalid "
                          "or expired", "request_id": _request_id()})
        gateway.stats["tokens_" + api_path.rsplit("/", 1)[1]] += 1
        return _json(gateway.issue())

    async def stats(request: Request) -> Response:
        with gateway.lock:
            data = dict(gateway.stats)
        return _json({"calls": gateway.calls, "throttle_every": gateway.throttle_every, **data})

    async def throttle(request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        with gateway.lock:
            gateway.throttle_every = int(body.get("every", gateway.throttle_every))
            gateway.throttle_seconds = int(body.get("seconds", gateway.throttle_seconds))
        return _json({"every": gateway.throttle_every, "seconds": gateway.throttle_seconds})

    async def expire_tokens(request: Request) -> Response:
        with gateway.lock:
            for token in gateway.access:
                gateway.access[token] = 0
        return _json({"expired": len(gateway.access)})

    app = Starlette(routes=[
        Route("/sync", sync, methods=["GET", "POST"]),
        Route("/rest/auth/token/{action}", token, methods=["POST"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_throttle", throttle, methods=["POST"]),
        Route("/_expire_tokens", expire_tokens, methods=["POST"]),
    ])
    app.state.world = world
    app.state.gateway = gateway
    app.state.reset = gateway.reset
    return app
