"""The loopback sandbox server: mounts each provider's fake API and the fault/admin routes."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from shipetl.sandbox.faults import FaultMiddleware, Faults, FaultState, faults_as_dict

AppFactory = Callable[["SandboxSettings"], Starlette]
"""Builds one provider's sandbox app; it may set ``app.state.reset`` to a no-argument callable
that ``POST /_sandbox/reset`` calls (to clear rate-limit counters and the like)."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
ADMIN_ROUTES = ("GET /", "GET /_sandbox/faults", "POST /_sandbox/faults", "POST /_sandbox/reset",
                "GET /_sandbox/stats")


def check_loopback(host: str) -> None:
    """Raise ``ValueError`` unless ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"sandbox host {host!r} is not a loopback address; use 127.0.0.1, ::1 or localhost")


@dataclass
class SandboxSettings:
    """How the sandbox runs and what it serves.

    ``port=0`` picks a free port (``running_sandbox`` only); ``seed`` and ``scale`` (a multiplier of
    data volume) fix every provider's data; ``extra`` holds provider knobs such as
    ``shipengine_rate_per_minute``. Only loopback hosts are accepted.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 42
    faults: Faults = field(default_factory=Faults)
    scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_loopback(self.host)
        if self.scale <= 0:
            raise ValueError(f"sandbox scale must be > 0, got {self.scale}")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def build_app(factories: Mapping[str, AppFactory], settings: SandboxSettings | None = None) -> Starlette:
    """Build the sandbox ASGI app: each factory's app under ``/<name>``, plus admin routes.

    Admin routes (never subject to faults): ``GET /`` lists providers; ``GET|POST /_sandbox/faults``
    reads or replaces the :class:`Faults`; ``POST /_sandbox/reset`` zeroes fault counters and calls
    each provider app's ``state.reset``; ``GET /_sandbox/stats`` counts requests and injected faults.
    """
    settings = settings or SandboxSettings()
    state = FaultState(settings.faults)
    mounts: list[Mount] = []
    for name, factory in sorted(factories.items()):
        if not _NAME.match(name):
            raise ValueError(f"sandbox provider name {name!r} must match {_NAME.pattern}")
        provider_app = factory(settings)
        reset = getattr(provider_app.state, "reset", None)
        if callable(reset):
            state.reset_callbacks.append(reset)
        mounts.append(Mount(f"/{name}", app=provider_app))

    async def index(request: Request) -> Response:
        return _json({
            "providers": [{"name": m.path.lstrip("/"), "base_url": str(request.base_url).rstrip("/") + m.path}
                          for m in mounts],
            "seed": settings.seed,
            "scale": settings.scale,
            "admin": list(ADMIN_ROUTES),
        })

    async def get_faults(request: Request) -> Response:
        return _json(faults_as_dict(state.faults))

    async def set_faults(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body() or b"{}")
            if not isinstance(data, dict):
                raise ValueError("faults: body must be a JSON object")
            faults = Faults.from_dict(data)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)
        state.replace(faults)
        return _json(faults_as_dict(faults))

    async def reset(request: Request) -> Response:
        state.reset()
        return _json({"reset": True})

    async def stats(request: Request) -> Response:
        return _json(state.stats())

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        *mounts,
    ]
    app = Starlette(routes=routes, middleware=[Middleware(FaultMiddleware, state=state)])
    app.state.faults = state
    app.state.settings = settings
    return app


def bind(settings: SandboxSettings) -> socket.socket:
    """A TCP socket bound to ``settings.host:port`` (``localhost`` means 127.0.0.1; port 0 picks a free one).

    :raises ValueError: the host is not a loopback address.
    :raises OSError: the address cannot be bound (the port is in use, or needs privileges).
    """
    check_loopback(settings.host)
    host = "127.0.0.1" if settings.host == "localhost" else settings.host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: without, Nagle plus delayed ACKs add ~40 ms to every loopback reply.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, settings.port))
    except OverflowError as exc:  # a port outside 0-65535
        sock.close()
        raise OSError(f"port {settings.port} is not in 0-65535") from exc
    except BaseException:
        sock.close()
        raise
    return sock


def serve(factories: Mapping[str, AppFactory], settings: SandboxSettings | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the sandbox on ``settings.host:port`` until interrupted (blocking).

    The socket is bound and listening before ``on_ready`` is called with the base URL
    (``http://127.0.0.1:8765``), so an announced URL always answers.

    :raises OSError: the address cannot be bound; nothing was announced.
    """
    settings = settings or SandboxSettings()
    app = build_app(factories, settings)
    sock = bind(settings)
    try:
        sock.listen(2048)  # connections queue from here on, until uvicorn accepts them
        host, port = sock.getsockname()[:2]
        if on_ready is not None:
            on_ready(_base_url(host, port))
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def running_sandbox(factories: Mapping[str, AppFactory], settings: SandboxSettings | None = None,
                    *, timeout_s: float = 10.0) -> Iterator[str]:
    """Run the sandbox in a background thread and yield its base URL (``http://127.0.0.1:PORT``).

    ``settings.port == 0`` (the default here) binds a free port. Waits until ``GET /`` answers;
    stops the server on exit. Raises ``RuntimeError`` if it does not come up within ``timeout_s``.
    """
    settings = settings or SandboxSettings(port=0)
    app = build_app(factories, settings)
    sock = bind(settings)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="shipetl-sandbox", daemon=True)
    thread.start()
    base = _base_url(host, port)
    try:
        _wait_until_up(base, server, thread, timeout_s)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()


def _wait_until_up(base: str, server: uvicorn.Server, thread: threading.Thread, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"sandbox at {base} stopped during start-up")
        if server.started:
            try:
                if httpx.get(base + "/", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.02)
    raise RuntimeError(f"sandbox at {base} did not answer within {timeout_s} s")
