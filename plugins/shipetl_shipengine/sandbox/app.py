"""The ShipEngine sandbox's routes: labels and tracking from the seeded world, API keys and rate limits as live.

API (mounted at ``/shipengine``): ``GET /v1/labels``, ``GET /v1/labels/{label_id}/track``, ``GET /v1/tracking``,
``POST /v1/tracking/start|stop``. Admin: ``GET|POST /_clock``; ``GET|POST /_tracking_outage``, which makes
tracking requests for chosen numbers (``{"tracking_numbers": [...]}``) or for all (``{"all": true}``) answer
503 ``Retry-After: 0`` every time, as an API that stays down through every retry (``{}`` ends it).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings

from .generate import build_world, iso_z
from .world import DEFAULT_CLOCK

DEFAULT_API_KEYS = ("TEST_sandbox_key", "sandbox_live_key")
DEFAULT_RATE_PER_MINUTE = 6000  # the live API allows 200 (test keys 20); high so the demo is quick
PAGE_SIZE_DEFAULT = 25
PAGE_SIZE_MAX = 500
AUTH_MESSAGE = "The API key is invalid. Please see https://www.shipengine.com/docs/auth"
RATE_MESSAGE = "You have exceeded the rate limit. Please see https://www.shipengine.com/docs/rate-limits"


# --- HTTP -----------------------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, error_type: str, error_code: str, message: str, *,
                   headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A ShipEngine error body: ``{request_id, errors: [{error_source, error_type, error_code, message}]}``."""
    error = {"error_source": "shipengine", "error_type": error_type, "error_code": error_code, "message": message}
    error.update(extra)
    return _json({"request_id": str(uuid.uuid4()), "errors": [error]}, status, headers)


class _BadParam(Exception):
    def __init__(self, field_name: str, message: str, code: str = "invalid_field_value") -> None:
        super().__init__(message)
        self.field_name, self.code = field_name, code


class RateLimiter:
    """Fixed one-minute windows per API key, as the live API counts requests per account."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> float | None:
        """Count one request; return None if allowed, else the seconds until the window reopens."""
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= 60:
                start, used = now, 0
            if used >= self.per_minute:
                return max(1.0, math.ceil(60 - (now - start)))
            self._windows[key] = (start, used + 1)
            return None

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


def _parse_time(params: Any, name: str) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _BadParam(name, f"{name} must be an ISO 8601 date-time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_int(params: Any, name: str, default: int, low: int, high: int | None = None) -> int:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _BadParam(name, f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _BadParam(name, f"{name} must be {limit}, got {number}")
    return number


def _choice(params: Any, name: str, allowed: Iterable[str], default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise _BadParam(name, f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def create_app(settings: SandboxSettings) -> Starlette:
    """The ShipEngine sandbox app; core mounts it at ``/shipengine`` (routes below are ``/v1/...``).

    Knobs in ``settings.extra``: ``shipengine_api_keys`` (accepted ``API-Key`` values),
    ``shipengine_rate_per_minute`` (per key, default 6000), ``shipengine_clock`` (ISO start clock).
    ``app.state.world`` is the :class:`World`; ``app.state.reset`` clears the rate-limit counters and any tracking outage.
    """
    extra = settings.extra
    world = build_world(settings.seed, settings.scale)
    if extra.get("shipengine_clock"):
        world.clock = _parse_time(extra, "shipengine_clock") or DEFAULT_CLOCK
    keys = frozenset(extra.get("shipengine_api_keys", DEFAULT_API_KEYS))
    limiter = RateLimiter(int(extra.get("shipengine_rate_per_minute", DEFAULT_RATE_PER_MINUTE)))

    def guard(request: Request) -> Response | None:
        key = request.headers.get("api-key")
        if not key or key not in keys:
            return error_response(401, "security", "unauthorized", AUTH_MESSAGE)
        wait = limiter.admit(key)
        if wait is not None:
            return error_response(429, "system", "rate_limit_exceeded", RATE_MESSAGE,
                                  headers={"Retry-After": str(int(wait))})
        return None

    outage: dict[str, Any] = {"all": False, "tracking_numbers": set()}

    def down(number: str | None) -> Response | None:
        if outage["all"] or number in outage["tracking_numbers"]:
            return error_response(503, "system", "unspecified", "The tracking service is unavailable (sandbox outage).",
                                  headers={"Retry-After": "0"})
        return None

    def bad(exc: _BadParam) -> Response:
        return error_response(400, "validation", exc.code, str(exc), field_name=exc.field_name)

    async def list_labels(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            page = _parse_int(q, "page", 1, 1)
            size = _parse_int(q, "page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
            start, end = _parse_time(q, "created_at_start"), _parse_time(q, "created_at_end")
            sort_by = _choice(q, "sort_by", ("created_at", "modified_at"), "created_at")
            sort_dir = _choice(q, "sort_dir", ("asc", "desc"), "desc")
        except _BadParam as exc:
            return bad(exc)
        clock = world.clock
        items = [s for s in world.labels(clock) if (start is None or s.created_at >= start)
                 and (end is None or s.created_at <= end)]
        for name, get in (("tracking_number", lambda s: s.tracking_number), ("service_code",
                          lambda s: s.label["service_code"]), ("carrier_id", lambda s: s.label["carrier_id"]),
                          ("label_status", lambda s: "completed"), ("shipment_id", lambda s: s.label["shipment_id"])):
            if q.get(name):
                items = [s for s in items if get(s) == q[name]]
        sort_key = (lambda s: (s.created_at, s.label_id)) if sort_by == "created_at" else \
            (lambda s: (s.modified_at(clock), s.label_id))
        items.sort(key=sort_key, reverse=sort_dir == "desc")
        total = len(items)
        pages = math.ceil(total / size)
        chunk = items[(page - 1) * size: page * size]

        def link(n: int) -> dict[str, str]:
            return {"href": str(request.url.include_query_params(page=n, page_size=size))}

        return _json({
            "labels": [world.label_json(s, clock) for s in chunk], "total": total, "page": page, "pages": pages,
            "links": {"first": link(1), "last": link(max(pages, 1)),
                      "prev": link(page - 1) if 1 < page <= pages + 1 else {},
                      "next": link(page + 1) if page < pages else {}},
        })

    async def track(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        carrier, number = request.query_params.get("carrier_code"), request.query_params.get("tracking_number")
        for name, value in (("carrier_code", carrier), ("tracking_number", number)):
            if not value:
                return bad(_BadParam(name, f"{name} is required", "field_value_required"))
        if (unavailable := down(number)) is not None:
            return unavailable
        s = world.by_tracking.get(number or "")
        if s is None or s.created_at > world.clock:
            return error_response(404, "validation", "not_found", f"Tracking number '{number}' was not found.")
        if carrier not in (s.label_carrier, s.tracking_carrier):
            return error_response(400, "validation", "invalid_identifier",
                                  f"carrier_code '{carrier}' is not valid for tracking number '{number}'.",
                                  field_name="carrier_code")
        return _json(world.tracking_json(s))

    async def track_label(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        label_id = request.path_params["label_id"]
        s = world.by_label.get(label_id)
        if (unavailable := down(s.tracking_number if s else None)) is not None:
            return unavailable
        if s is None or s.created_at > world.clock:
            return error_response(404, "validation", "not_found", f"Label '{label_id}' was not found.")
        return _json(world.tracking_json(s))

    async def subscribe(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        for name in ("carrier_code", "tracking_number"):
            if not request.query_params.get(name):
                return bad(_BadParam(name, f"{name} is required", "field_value_required"))
        return Response(status_code=204)

    async def get_clock(request: Request) -> Response:
        return _json({"now": iso_z(world.clock)})

    async def set_clock(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body() or b"{}")
            now = _parse_time(data, "now") if isinstance(data, dict) else None
        except (orjson.JSONDecodeError, _BadParam) as exc:
            return _json({"error": str(exc)}, 400)
        if now is None:
            return _json({"error": 'body must be {"now": "<ISO 8601 date-time>"}'}, 400)
        world.clock = now.astimezone(UTC)
        return _json({"now": iso_z(world.clock)})

    def outage_json() -> Response:
        return _json({"all": outage["all"], "tracking_numbers": sorted(outage["tracking_numbers"])})

    async def get_outage(request: Request) -> Response:
        return outage_json()

    async def set_outage(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            return _json({"error": str(exc)}, 400)
        numbers = data.get("tracking_numbers", []) if isinstance(data, dict) else None
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            return _json({"error": 'body must be {"tracking_numbers": ["..."]} and/or {"all": true}'}, 400)
        outage.update({"all": bool(data.get("all")), "tracking_numbers": set(numbers)})
        return outage_json()

    def reset() -> None:
        limiter.reset()
        outage.update({"all": False, "tracking_numbers": set()})

    app = Starlette(routes=[
        Route("/v1/labels", list_labels, methods=["GET"]),
        Route("/v1/labels/{label_id}/track", track_label, methods=["GET"]),
        Route("/v1/tracking", track, methods=["GET"]),
        Route("/v1/tracking/start", subscribe, methods=["POST"]),
        Route("/v1/tracking/stop", subscribe, methods=["POST"]),
        Route("/_clock", get_clock, methods=["GET"]),
        Route("/_clock", set_clock, methods=["POST"]),
        Route("/_tracking_outage", get_outage, methods=["GET"]),
        Route("/_tracking_outage", set_outage, methods=["POST"]),
    ])
    app.state.world = world
    app.state.limiter = limiter
    app.state.reset = reset
    return app
