"""Injected faults for the sandbox: latency, 429, 5xx and truncated bodies, random but repeatable."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson

FAULT_HEADER = "x-sandbox-fault"
FAULT_KINDS = ("429", "500", "502", "503", "truncate", "latency")
_STATUS_KINDS = {"429": 429, "500": 500, "502": 502, "503": 503}


@dataclass
class Faults:
    """How often the sandbox misbehaves; rates are probabilities per request in ``[0, 1]``.

    ``latency_ms`` delays every provider request; ``rate_5xx`` splits between 500 and 503;
    ``retry_after_s`` is the ``Retry-After`` of injected 429s; ``seed`` fixes the random draws.
    """

    latency_ms: int = 0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_truncate: float = 0.0
    retry_after_s: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "rate_truncate"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"faults.{name}: {value} is not a probability in [0, 1]")
            setattr(self, name, value)
        if self.rate_429 + self.rate_5xx + self.rate_truncate > 1.0:
            raise ValueError("faults: rate_429 + rate_5xx + rate_truncate must not exceed 1")
        if int(self.latency_ms) < 0 or float(self.retry_after_s) < 0:
            raise ValueError("faults: latency_ms and retry_after_s must be >= 0")
        self.latency_ms = int(self.latency_ms)
        self.retry_after_s = float(self.retry_after_s)
        self.seed = int(self.seed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """Build from a JSON object; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"faults: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class _Plan:
    latency_ms: int
    kind: str | None  # one of _STATUS_KINDS, "truncate", or None


class FaultState:
    """The active ``Faults``, the random stream drawing them, and counters of what was injected.

    Shared between the middleware and the admin routes; ``reset_callbacks`` are called by
    :meth:`reset` so providers can clear their own counters (rate limits) at the same time.
    """

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self.reset_callbacks: list[Any] = []
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self.forced = 0

    def replace(self, faults: Faults) -> None:
        """Switch to new settings and restart the random stream from their seed."""
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def reset(self) -> None:
        """Zero the counters, restart the random stream, and call every provider's reset callback."""
        with self._lock:
            self._rng = random.Random(self.faults.seed)
            self.requests = 0
            self.forced = 0
            self.injected.clear()
        for callback in self.reset_callbacks:
            callback()

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-ready data: provider requests seen and faults injected by kind."""
        with self._lock:
            return {
                "requests": self.requests,
                "forced": self.forced,
                "faults": {kind: self.injected.get(kind, 0) for kind in FAULT_KINDS},
                "total_faults": sum(self.injected.values()),
            }

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def plan(self, header: str | None) -> _Plan:
        """Decide this request's fault: forced by the header, else drawn from the rates."""
        with self._lock:
            self.requests += 1
            if header:
                self.forced += 1
                return _parse_header(header)
            f = self.faults
            draw = self._rng.random()
            kind: str | None = None
            if draw < f.rate_429:
                kind = "429"
            elif draw < f.rate_429 + f.rate_5xx:
                kind = "503" if self._rng.random() < 0.5 else "500"
            elif draw < f.rate_429 + f.rate_5xx + f.rate_truncate:
                kind = "truncate"
            return _Plan(latency_ms=f.latency_ms, kind=kind)


def _parse_header(value: str) -> _Plan:
    """``429``, ``500``, ``502``, ``503``, ``truncate``, ``latency=MS``; several joined by commas."""
    latency, kind = 0, None
    for part in (p.strip().lower() for p in value.split(",")):
        if part.startswith("latency="):
            try:
                latency = max(0, int(part.split("=", 1)[1]))
            except ValueError:
                continue
        elif part in _STATUS_KINDS or part == "truncate":
            kind = part
    return _Plan(latency_ms=latency, kind=kind)


def _is_admin(path: str) -> bool:
    # Admin routes (``/_sandbox/...``, ``/shipengine/_clock``) never get faults.
    return any(part.startswith("_") for part in path.split("/") if part)


def error_body(status: int) -> bytes:
    """The JSON body of an injected error (ShipEngine-like ``errors[]``, good enough for all)."""
    code, message = (
        ("rate_limit_exceeded", "You have exceeded the rate limit (injected by the sandbox).")
        if status == 429
        else ("unspecified", f"Injected HTTP {status} from the sandbox.")
    )
    return orjson.dumps({
        "request_id": str(uuid.uuid4()),
        "errors": [{"error_source": "shipengine", "error_type": "system", "error_code": code, "message": message}],
    })


class FaultMiddleware:
    """ASGI middleware applying :class:`FaultState` to every non-admin HTTP request."""

    def __init__(self, app: Any, state: FaultState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _is_admin(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", []):
            if key.decode("latin-1").lower() == FAULT_HEADER:
                header = value.decode("latin-1")
        plan = self.state.plan(header)
        if plan.latency_ms:
            self.state.count("latency")
            await asyncio.sleep(plan.latency_ms / 1000)
        if plan.kind in _STATUS_KINDS:
            await self._error(send, _STATUS_KINDS[plan.kind])
        elif plan.kind == "truncate":
            await self._truncated(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _error(self, send: Any, status: int) -> None:
        self.state.count(str(status))
        body = error_body(status)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 429:
            retry = self.state.faults.retry_after_s
            text = str(int(retry)) if float(retry).is_integer() else str(retry)
            headers.append((b"retry-after", text.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _truncated(self, scope: dict, receive: Any, send: Any) -> None:
        start: dict | None = None
        chunks: list[bytes] = []

        async def capture(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        assert start is not None
        body = b"".join(chunks)
        if not 200 <= start["status"] < 300 or len(body) < 2:
            # Only successful bodies are cut; errors pass through untouched and uncounted.
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        self.state.count("truncate")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2]})


def faults_as_dict(faults: Faults) -> dict[str, Any]:
    """``Faults`` as the JSON object ``GET /_sandbox/faults`` returns."""
    return asdict(faults)
