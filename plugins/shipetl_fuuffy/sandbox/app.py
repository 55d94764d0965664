"""The Fuuffy sandbox's routes: client-credentials tokens, Fuuffy's error envelopes, two rate windows.

Auth, envelopes and limits as providers.md 4 and 6.4 describe the live API: client-credentials
tokens (3600 s, no refresh), ``401000`` / ``invalid_token`` / ``401021``, ``400000`` with ``error_trace``,
``ORDER_NOT_FOUND``, 403 for another member's order, ``500999`` and latency from the courier, two rate
windows with ``X-RateLimit-*`` and 429. The bodies come from the seeded world (``world.py``).

Knobs in ``settings.extra`` (all optional): ``fuuffy_clients`` ({client_id: secret}), ``fuuffy_token_ttl_s``,
``fuuffy_token_max_uses`` (a token dies after that many API calls: expiry in the middle of a run),
``fuuffy_rate_per_minute`` / ``fuuffy_rate_per_hour`` / ``fuuffy_rate_window_s`` (length of the "minute";
the hour is 60 of them), ``fuuffy_courier_latency_ms``, ``fuuffy_courier_failures`` (order ids or tracking
numbers whose tracking always answers 500999), ``fuuffy_clock`` (ISO). Admin routes: ``POST /_tokens/expire``,
``GET /_stats``, ``GET|POST /_clock``.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings

from .world import FOREIGN_ORDER_IDS, HK, Order, Parcel, build_world

DEFAULT_CLIENTS = {"sandbox-client": "sandbox-secret-7f3e"}
TOKEN_TTL_S = 3600
# Generous by default so the demo is quick; the live API allows 100 a minute and 1000 an hour.
DEFAULT_RATE_PER_MINUTE = 6000
DEFAULT_RATE_PER_HOUR = 60000
PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX = 20, 100


# --- HTTP -----------------------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, code: str, reason: str, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    """Fuuffy's failure envelope ``{"error": {code, code_reason, message, error_code?, error_trace?}}``."""
    return _json({"error": {"code": code, "code_reason": reason, "message": message, **extra}}, status, headers)


def _bad_request(field_name: str, message: str) -> Response:
    return error_response(400, "400000", "BAD_REQUEST", "Bad Request",
                          error_trace=[{"field": field_name, "message": message}])


@dataclass
class _Token:
    client_id: str
    expires: float
    uses: int = 0


class RateWindows:
    """Fixed windows per client: ``per_minute`` in each window of ``window_s``, ``per_hour`` in 60 of them."""

    def __init__(self, per_minute: int, per_hour: int, window_s: float) -> None:
        self.limits = ((per_minute, window_s), (per_hour, window_s * 60))
        self._used: dict[tuple[str, int], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> tuple[bool, int, int, float]:
        """Count one request: (allowed, limit, remaining, reset epoch s) of the tightest window."""
        now = time.time()
        with self._lock:
            windows = []
            for i, (limit, length) in enumerate(self.limits):
                start, used = self._used.get((client, i), (now, 0))
                if now - start >= length:
                    start, used = now, 0
                windows.append((i, limit, start + length, start, used))
            allowed = all(used < limit for _, limit, _, _, used in windows)
            if allowed:
                windows = [(i, limit, reset, start, used + 1) for i, limit, reset, start, used in windows]
            for i, _, _, start, used in windows:
                self._used[(client, i)] = (start, used)
            # Report the window with the fewest requests left; of two exhausted ones, the later reset.
            _, limit, reset, _, used = min(windows, key=lambda w: (w[1] - w[4], -w[2]))
            return allowed, limit, max(0, limit - used), reset

    def reset(self) -> None:
        with self._lock:
            self._used.clear()


@dataclass
class SandboxState:
    """Tokens issued, counters, and the knobs of one Fuuffy sandbox."""

    clients: dict[str, str]
    ttl_s: float
    max_uses: int | None
    courier_latency_ms: int
    courier_failures: frozenset[str]
    tokens: dict[str, _Token] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: {"token_requests": 0, "api_requests": 0, "rejected_tokens": 0,
                                                           "throttled": 0, "exhausted": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            for key in self.stats:
                self.stats[key] = 0


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(reset))}


def _parse_date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date as YYYY-MM-DD") from None


def create_app(settings: SandboxSettings) -> Starlette:
    """The Fuuffy sandbox app; core mounts it at ``/fuuffy`` (routes below are ``/v1/...``)."""
    extra = settings.extra
    world = build_world(settings.seed, settings.scale)
    if extra.get("fuuffy_clock"):
        world.clock = datetime.fromisoformat(str(extra["fuuffy_clock"])).astimezone(UTC)
    state = SandboxState(
        clients=dict(extra.get("fuuffy_clients", DEFAULT_CLIENTS)),
        ttl_s=float(extra.get("fuuffy_token_ttl_s", TOKEN_TTL_S)),
        max_uses=int(extra["fuuffy_token_max_uses"]) if extra.get("fuuffy_token_max_uses") else None,
        courier_latency_ms=int(extra.get("fuuffy_courier_latency_ms", 0)),
        courier_failures=frozenset(str(x) for x in extra.get("fuuffy_courier_failures", ())),
    )
    limiter = RateWindows(int(extra.get("fuuffy_rate_per_minute", DEFAULT_RATE_PER_MINUTE)),
                          int(extra.get("fuuffy_rate_per_hour", DEFAULT_RATE_PER_HOUR)),
                          float(extra.get("fuuffy_rate_window_s", 60)))

    async def issue_token(request: Request) -> Response:
        with state.lock:
            state.stats["token_requests"] += 1
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _bad_request("grant_type", "send a form body (application/x-www-form-urlencoded)")
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _bad_request("grant_type", "grant_type must be client_credentials")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id or not secret:
            return _bad_request("client_id" if not client_id else "client_secret", "client_id and client_secret are required")
        if state.clients.get(str(client_id)) != secret:
            return error_response(401, "401021", "invalid_client_id_or_client_secret", "Invalid client id or client secret")
        token = secrets.token_urlsafe(32)
        with state.lock:
            state.tokens[token] = _Token(str(client_id), time.time() + state.ttl_s)
        return _json({"data": {"access_token": token, "token_type": "Bearer", "expires_in": int(state.ttl_s)}})

    def guard(request: Request) -> Response | tuple[str, dict[str, str]]:
        """The caller's client id and rate headers, or the error reply (bad token, throttled)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        with state.lock:
            entry = state.tokens.get(token) if scheme.lower() == "bearer" else None
            if entry is not None and (entry.expires <= time.time()
                                      or (state.max_uses is not None and entry.uses >= state.max_uses)):
                state.stats["rejected_tokens"] += 1
                return error_response(401, "invalid_token", "UNAUTHORIZED", "The access token expired")
            if entry is None:
                state.stats["rejected_tokens"] += 1
                return error_response(401, "401000", "UNAUTHORIZED", "Unauthorized")
            entry.uses += 1
            state.stats["api_requests"] += 1
        allowed, limit, remaining, reset = limiter.admit(entry.client_id)
        headers = _rate_headers(limit, remaining, reset)
        with state.lock:
            if not allowed:
                state.stats["throttled"] += 1
            elif remaining == 0:
                state.stats["exhausted"] += 1  # this reply tells the client to wait for the reset
        if not allowed:
            return error_response(429, "rate_limit_exceeded", "TOO_MANY_REQUESTS", "Rate limit exceeded", headers=headers)
        return entry.client_id, headers

    async def list_orders(request: Request) -> Response:
        checked = guard(request)
        if isinstance(checked, Response):
            return checked
        _, headers = checked
        q = request.query_params
        try:
            start, end = _parse_date(q.get("start_date"), "start_date"), _parse_date(q.get("end_date"), "end_date")
        except ValueError as exc:
            return _bad_request(str(exc).split()[0], str(exc))
        try:
            page, limit = int(q.get("page", 1)), int(q.get("limit", PAGE_LIMIT_DEFAULT))
        except ValueError:
            return _bad_request("page", "page and limit must be integers")
        if page < 1 or not 1 <= limit <= PAGE_LIMIT_MAX:
            return _bad_request("limit" if page >= 1 else "page", f"limit must be 1-{PAGE_LIMIT_MAX}, page at least 1")
        sort_key, sort_dir = q.get("sort_key", "create_time"), q.get("sort_dir", "DESC").upper()
        if sort_key not in ("create_time", "order_id") or sort_dir not in ("ASC", "DESC"):
            return _bad_request("sort_key", "sort_key is create_time or order_id, sort_dir ASC or DESC")
        wanted = q.get("order_status")
        clock = world.clock
        # Filter dates are Hong Kong dates; end_date is treated as exclusive (its meaning is unconfirmed).
        items = [o for o in world.visible_orders(clock)
                 if (start is None or o.created.astimezone(HK).date() >= start)
                 and (end is None or o.created.astimezone(HK).date() < end)
                 and (not wanted or o.stage(clock)[0].upper() == wanted.upper())]
        items.sort(key=(lambda o: int(o.order_id)) if sort_key == "order_id" else (lambda o: o.created),
                   reverse=sort_dir == "DESC")
        total = len(items)
        chunk = items[(page - 1) * limit: page * limit]
        return _json({"data": {"order_list": [world.order_json(o, clock) for o in chunk]},
                      "pagination": {"total": total, "page": page, "per_page": limit,
                                     "total_pages": math.ceil(total / limit)}}, headers=headers)

    async def track(order: Order, parcel: Parcel | None, headers: dict[str, str]) -> Response:
        if state.courier_latency_ms:
            await asyncio.sleep(state.courier_latency_ms / 1000)
        keys = {order.order_id} | ({parcel.tracking_number} if parcel else set())
        if keys & state.courier_failures:
            return error_response(500, "500999", "API_ERROR", "Api Error, please contact customer service",
                                  headers=headers)
        return _json(world.tracking_json(order, parcel), headers=headers)

    async def track_by_order(request: Request) -> Response:
        checked = guard(request)
        if isinstance(checked, Response):
            return checked
        _, headers = checked
        order_id = request.path_params["order_id"]
        if order_id in FOREIGN_ORDER_IDS:
            return _json({"error": "Access forbidden for this resource"}, 403, headers)
        order = world.by_id.get(order_id)
        if order is None or order.created > world.clock:
            return error_response(400, "400000", "BAD_REQUEST", "Bad Request", error_code="ORDER_NOT_FOUND",
                                  headers=headers)
        return await track(order, order.parcels[0] if order.parcels else None, headers)

    async def track_by_number(request: Request) -> Response:
        checked = guard(request)
        if isinstance(checked, Response):
            return checked
        _, headers = checked
        number = request.query_params.get("tracking_number")
        if not number:
            return error_response(400, "400000", "BAD_REQUEST", "Bad Request", error_code="TRACKING_NUMBER_REQUIRED",
                                  error_trace=[{"field": "order_id", "message":
                                                "order_id is required when tracking_number is not provided"}],
                                  headers=headers)
        found = world.by_tracking.get(number)
        if found is None or world.clock < found[0].labelled:
            return error_response(400, "400000", "BAD_REQUEST", "Bad Request", error_code="ORDER_NOT_FOUND",
                                  headers=headers)
        return await track(found[0], found[1], headers)

    async def expire_tokens(request: Request) -> Response:
        with state.lock:
            for entry in state.tokens.values():
                entry.expires = 0.0
            count = len(state.tokens)
        return _json({"expired": count})

    async def stats(request: Request) -> Response:
        with state.lock:
            return _json(dict(state.stats))

    async def get_clock(request: Request) -> Response:
        return _json({"now": world.clock.isoformat()})

    async def set_clock(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body() or b"{}")
            world.clock = datetime.fromisoformat(str(data["now"]).replace("Z", "+00:00")).astimezone(UTC)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return _json({"error": 'body must be {"now": "<ISO 8601 date-time with offset>"}'}, 400)
        return _json({"now": world.clock.isoformat()})

    def reset() -> None:
        limiter.reset()
        state.reset()

    app = Starlette(routes=[
        Route("/v1/auth/token", issue_token, methods=["POST"]),
        Route("/v1/order/list", list_orders, methods=["GET"]),
        Route("/v1/tracking/get", track_by_number, methods=["GET"]),
        Route("/v1/tracking/get/{order_id}", track_by_order, methods=["GET"]),
        Route("/_tokens/expire", expire_tokens, methods=["POST"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_clock", get_clock, methods=["GET"]),
        Route("/_clock", set_clock, methods=["POST"]),
    ])
    app.state.world = world
    app.state.fuuffy = state
    app.state.reset = reset
    return app
