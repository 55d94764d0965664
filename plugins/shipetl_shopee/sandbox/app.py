"""The Shopee sandbox's routes: the v2 endpoints shipetl calls, in Shopee's envelope, plus admin routes.

API (mounted at ``/shopee``): ``GET /api/v2/order/get_order_list``, ``GET /api/v2/order/get_order_detail``,
``GET /api/v2/logistics/get_tracking_number``, ``GET /api/v2/logistics/get_tracking_info``,
``POST /api/v2/auth/token/get``, ``POST /api/v2/auth/access_token/get``, ``GET /api/v2/shop/auth_partner``
(redirects at once with a fresh code, as if the seller had logged in; ``shop_id`` picks the shop).

Admin (never faulted): ``GET|POST /_clock`` (``{"advance_s": s, "step_s": s}`` moves the token clock,
now and at every shop call), ``POST /_revoke`` (``{"shop_id": n}``), ``GET|DELETE /_requests`` (what
was asked, secrets left out), ``GET|POST /_switches`` (``rate_limit``: next N shop calls answer
``error_rate_limit``; ``daily_limit``: next N answer ``error_limit``; ``stall_after_refresh_s``: the first
shop call after a refresh hangs that long, so a test can kill the client right after it persisted the
pair; ``hidden_orders``: order numbers ``get_order_detail`` leaves out).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings

from .auth import ACCESS_LIFE_S, Auth, ShopeeError
from .generate import build_world
from .world import Order, Package, World

MAX_WINDOW_S = 1_296_000
PAGE_SIZE_MAX = 100
DETAIL_BATCH_MAX = 50
OPTIONAL_DETAIL_FIELDS = frozenset({
    "buyer_user_id", "buyer_username", "estimated_shipping_fee", "recipient_address", "actual_shipping_fee",
    "goods_to_declare", "note", "note_update_time", "item_list", "pay_time", "dropshipper", "dropshipper_phone",
    "split_up", "buyer_cancel_reason", "cancel_by", "cancel_reason", "actual_shipping_fee_confirmed",
    "buyer_cpf_id", "fulfillment_flag", "pickup_done_time", "package_list", "shipping_carrier", "payment_method",
    "total_amount", "invoice_data", "checkout_shipping_carrier", "reverse_shipping_fee",
    "order_chargeable_weight_gram",
})
# Live replies give the life left a moment after issue (providers.md 6.2: 14376, not 14400).
EXPIRE_IN_S = ACCESS_LIFE_S - 24
NO_TRACKING_HINT = "The tracking number has not been generated yet, please try again later."
REQUEST_LOG_MAX = 50_000


@dataclass
class Switches:
    rate_limit: int = 0
    daily_limit: int = 0
    stall_after_refresh_s: float = 0.0
    hidden_orders: list[str] = field(default_factory=list)
    stall_armed: bool = False


def _request_id() -> str:
    return secrets.token_hex(16)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(exc: ShopeeError, flat: bool = False) -> Response:
    body: dict[str, Any] = {"request_id": _request_id(), "error": exc.error, "message": exc.message}
    if not flat:
        body["response"] = None
    return _json(body, exc.status)


def _api_path(request: Request) -> str:
    """The path Shopee signs: from ``/api/v2`` on, whatever prefix the sandbox is mounted under."""
    path = request.url.path
    return path[path.find("/api/v2"):] if "/api/v2" in path else path


def _param(query, name: str) -> str:
    value = query.get(name)
    if value is None or value == "":
        raise ShopeeError("error_param", f"Wrong parameters, detail: {name} is required.", 400)
    return value


def _int(query, name: str) -> int:
    try:
        return int(_param(query, name))
    except ValueError:
        raise ShopeeError("error_param", f"Wrong parameters, detail: {name} must be an integer.", 400) from None


def _csv(text: str) -> list[str]:
    # The docs' examples bracket lists ([a,b]) while the text asks for a,b: accept both.
    return [part.strip() for part in text.strip().strip("[]").split(",") if part.strip()]


class ShopeeSandbox:
    """The world, the auth state, the switches and the request log of one sandbox app."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.world: World = build_world(settings.seed, settings.scale)
        self.auth = Auth(seed=settings.seed, shops=frozenset(self.world.shops))
        self.switches = Switches()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.switches = Switches()

    def log(self, request: Request, error: str) -> None:
        params = {k: v for k, v in request.query_params.items() if k not in ("sign", "access_token")}
        with self._lock:
            if len(self.requests) < REQUEST_LOG_MAX:
                self.requests.append({"method": request.method, "path": _api_path(request),
                                      "params": params, "error": error, "at": time.time()})

    def _take(self, name: str) -> bool:
        with self._lock:
            left = getattr(self.switches, name)
            if left > 0:
                setattr(self.switches, name, left - 1)
                return True
            return False

    async def stall_if_armed(self) -> None:
        with self._lock:
            armed, self.switches.stall_armed = self.switches.stall_armed, False
        deadline = time.monotonic() + self.switches.stall_after_refresh_s
        while armed and time.monotonic() < deadline and self.switches.stall_after_refresh_s > 0:
            await asyncio.sleep(0.05)

    def throttle(self) -> None:
        """The injected throttling and quota errors, both sent with HTTP 200 as Shopee does."""
        if self._take("rate_limit"):
            raise ShopeeError("error_rate_limit", "Too many requests, please try again later.", 200)
        if self._take("daily_limit"):
            raise ShopeeError("error_limit", "The API call limit of today is exceeded.", 200)

    # --- shop endpoints ------------------------------------------------------------------------------

    def order_list(self, shop_id: int, q) -> dict[str, Any]:
        field_name = _param(q, "time_range_field")
        if field_name not in ("create_time", "update_time"):
            raise ShopeeError("error_param", "Wrong parameters, detail: time_range_field is invalid.", 400)
        time_from, time_to = _int(q, "time_from"), _int(q, "time_to")
        if time_from > time_to or time_to - time_from > MAX_WINDOW_S:
            raise ShopeeError("order.order_list_invalid_time",
                              "Start time must be earlier than end time and diff in 15days.", 400)
        page_size = _int(q, "page_size")
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            raise ShopeeError("error_param", "Wrong parameters, detail: page_size should be between 1 and 100.", 400)
        cursor = q.get("cursor") or "0"
        if not cursor.isdigit():
            raise ShopeeError("error_param", "Wrong parameters, detail: cursor is invalid.", 400)
        wanted = q.get("order_status")
        matches = [o for o in self.world.by_shop[shop_id]
                   if time_from <= getattr(o, field_name) <= time_to and (not wanted or o.status == wanted)]
        start = int(cursor)
        chunk = matches[start:start + page_size]
        more = start + page_size < len(matches)
        with_status = "order_status" in _csv(q.get("response_optional_fields") or "")
        return {"more": more, "next_cursor": str(start + page_size) if more else "",
                "order_list": [{"order_sn": o.order_sn, **({"order_status": o.status} if with_status else {})}
                               for o in chunk]}

    def order_detail(self, shop_id: int, q) -> tuple[dict[str, Any], list[str]]:
        numbers = _csv(_param(q, "order_sn_list"))
        if not 1 <= len(numbers) <= DETAIL_BATCH_MAX:
            raise ShopeeError("error_param", "Wrong parameters, detail: order_sn_list should be between 1 and 50.",
                              400)
        fields = set(_csv(q.get("response_optional_fields") or "")) & OPTIONAL_DETAIL_FIELDS
        found, warnings = [], []
        for sn in numbers:
            order = self.world.by_sn.get((shop_id, sn))
            if order is None or sn in self.switches.hidden_orders:
                warnings.append(f"order_sn {sn} not found")
            else:
                found.append(self.world.order_json(order, fields))
        return {"order_list": found}, warnings

    def _package(self, shop_id: int, q) -> tuple[Order, Package]:
        order = self.world.by_sn.get((shop_id, _param(q, "order_sn")))
        if order is None:
            raise ShopeeError("logistics.invalid_error", "The order is not exist.")
        number = q.get("package_number")
        if number:
            for package in order.packages:
                if package.package_number == number:
                    return order, package
            raise ShopeeError("logistics.package_not_exist", "The package is not exist.")
        if len(order.packages) > 1:
            raise ShopeeError("logistics.package_number_not_exist",
                              "Please request with package_number for this split order.")
        if not order.packages:
            raise ShopeeError("logistics.package_not_exist", "The package is not exist.")
        return order, order.packages[0]

    def tracking_number(self, shop_id: int, q) -> dict[str, Any]:
        _, package = self._package(shop_id, q)
        if package.allocating:
            raise ShopeeError("logistics.error_param",
                              "The order is being allocated, please wait until the allocate is completed.")
        reply: dict[str, Any] = {"tracking_number": package.tracking_number,
                                 "hint": "" if package.tracking_number else NO_TRACKING_HINT}
        for name in _csv(q.get("response_optional_fields") or ""):
            if name in ("plp_number", "first_mile_tracking_number", "last_mile_tracking_number"):
                reply[name] = None
        return reply

    def tracking_info(self, shop_id: int, q) -> dict[str, Any]:
        order, package = self._package(shop_id, q)
        return self.world.tracking_info_json(order, package)


def create_app(settings: SandboxSettings) -> Starlette:
    """The Shopee sandbox app; core mounts it at ``/shopee``. ``app.state.sandbox`` is the :class:`ShopeeSandbox`."""
    sb = ShopeeSandbox(settings)

    def shop_call(handler):
        async def route(request: Request) -> Response:
            await sb.stall_if_armed()
            try:
                shop_id = sb.auth.check(_api_path(request), request.query_params)
                sb.throttle()
                sb.auth.tick()
                result = handler(shop_id, request.query_params)
            except ShopeeError as exc:
                sb.log(request, exc.error)
                return _error(exc)
            sb.log(request, "")
            response, warnings = result if isinstance(result, tuple) else (result, [])
            body = {"request_id": _request_id(), "error": "", "message": "", "response": response}
            if warnings:
                body["warning"] = warnings
            return _json(body)
        return route

    async def token_call(request: Request, refresh: bool) -> Response:
        try:
            sb.auth.check(_api_path(request), request.query_params)
            try:
                data = orjson.loads(await request.body() or b"{}")
            except orjson.JSONDecodeError:
                raise ShopeeError("error_param", "Wrong parameters, detail: body must be JSON.", 400) from None
            if str(data.get("partner_id")) != str(sb.auth.partner_id):
                raise ShopeeError("error_param", "Invalid partner_id.", 400)
            shop_id = int(data.get("shop_id") or 0)
            if shop_id not in sb.world.shops:
                raise ShopeeError("common.invalid_shop", "Shop id is invalid. Please check your shop.", 403)
            if refresh:
                pair = sb.auth.refresh(str(data.get("refresh_token") or ""), shop_id)
                pair.update(partner_id=sb.auth.partner_id, shop_id=shop_id)
                with sb._lock:
                    sb.switches.stall_armed = sb.switches.stall_after_refresh_s > 0
            else:
                pair = sb.auth.exchange(str(data.get("code") or ""), shop_id)
        except ShopeeError as exc:
            sb.log(request, exc.error)
            return _error(exc, flat=True)
        sb.log(request, "")
        pair["expire_in"] = EXPIRE_IN_S
        return _json({**pair, "request_id": _request_id(), "error": "", "message": ""})

    async def token_get(request: Request) -> Response:
        return await token_call(request, refresh=False)

    async def token_refresh(request: Request) -> Response:
        return await token_call(request, refresh=True)

    async def auth_partner(request: Request) -> Response:
        q = request.query_params
        try:
            sb.auth.check(_api_path(request), q)
            redirect = _param(q, "redirect")
            shop_id = int(q.get("shop_id") or min(sb.world.shops))
            if shop_id not in sb.world.shops:
                raise ShopeeError("common.invalid_shop", "Shop id is invalid. Please check your shop.", 403)
        except (ShopeeError, ValueError) as exc:
            err = exc if isinstance(exc, ShopeeError) else ShopeeError("error_param", str(exc), 400)
            return _error(err, flat=True)
        separator = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{separator}code={sb.auth.new_code(shop_id)}&shop_id={shop_id}", 302)

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            data = orjson.loads(await request.body() or b"{}")
            with sb.auth.lock:
                sb.auth.offset_s += float(data.get("advance_s", 0))
                sb.auth.step_s = float(data.get("step_s", sb.auth.step_s))
        return _json({"now": sb.auth.now(), "offset_s": sb.auth.offset_s, "step_s": sb.auth.step_s})

    async def revoke(request: Request) -> Response:
        data = orjson.loads(await request.body() or b"{}")
        sb.auth.revoke(int(data["shop_id"]))
        return _json({"revoked": int(data["shop_id"])})

    async def requests_log(request: Request) -> Response:
        if request.method == "DELETE":
            with sb._lock:
                sb.requests.clear()
        with sb._lock:
            return _json({"requests": list(sb.requests)})

    async def switches(request: Request) -> Response:
        if request.method == "POST":
            data = orjson.loads(await request.body() or b"{}")
            unknown = set(data) - {"rate_limit", "daily_limit", "stall_after_refresh_s", "hidden_orders"}
            if unknown:
                return _json({"error": f"unknown switch(es): {sorted(unknown)}"}, 400)
            with sb._lock:
                for key, value in data.items():
                    setattr(sb.switches, key, value)
        return _json(asdict(sb.switches))

    api = "/api/v2"
    app = Starlette(routes=[
        Route(f"{api}/order/get_order_list", shop_call(sb.order_list), methods=["GET"]),
        Route(f"{api}/order/get_order_detail", shop_call(sb.order_detail), methods=["GET"]),
        Route(f"{api}/logistics/get_tracking_number", shop_call(sb.tracking_number), methods=["GET"]),
        Route(f"{api}/logistics/get_tracking_info", shop_call(sb.tracking_info), methods=["GET"]),
        Route(f"{api}/auth/token/get", token_get, methods=["POST"]),
        Route(f"{api}/auth/access_token/get", token_refresh, methods=["POST"]),
        Route(f"{api}/shop/auth_partner", auth_partner, methods=["GET"]),
        Route("/_clock", clock, methods=["GET", "POST"]),
        Route("/_revoke", revoke, methods=["POST"]),
        Route("/_requests", requests_log, methods=["GET", "DELETE"]),
        Route("/_switches", switches, methods=["GET", "POST"]),
    ])
    app.state.sandbox = sb
    app.state.world = sb.world
    app.state.reset = sb.reset
    return app
