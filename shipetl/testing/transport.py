"""The contract's HTTP: fixture files served by route, or a live loopback server, every request recorded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..redact import redact_obj

MAX_REQUESTS = 2000  # more than this from fixtures means paging never ends
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Reply:
    """An HTTP reply served from a fixture file (``None``: empty body)."""

    status: int = 200
    file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


ErrorFixture = Reply  # an error reply: ``ErrorFixture(401, "error_401.json")``


def as_reply(value: str | Reply) -> Reply:
    """A route's reply: a fixture file name is a 200 with that body."""
    return value if isinstance(value, Reply) else Reply(200, value)


def request_params(request: httpx.Request) -> dict[str, str]:
    """A request's query parameters, and the fields of its form body when it is a form POST (they win)."""
    params = dict(request.url.params)
    if request.headers.get("content-type", "").startswith(FORM):
        params.update(httpx.QueryParams(request.content.decode("utf-8", "replace")))
    return params


def _route(key: str) -> tuple[str, str, dict[str, str]]:
    method, _, target = key.strip().partition(" ")
    url = httpx.URL(target.strip() or "/")
    return method.upper(), "/" + url.path.strip("/"), dict(url.params)


class FixtureTransport(httpx.MockTransport):
    """Answers requests under ``base_url`` from fixture files by route, and records every request.

    A route is ``"METHOD /path"`` plus optional parameters that must match (``"GET /v1/orders?page=2"``):
    the request's query parameters and, for a form POST (``application/x-www-form-urlencoded``), its form
    fields, so an API taking every call at one path (``"POST /sync?method=orders.get&order_id=1"``) has a
    route per call. The route naming most parameters wins, and counts the request in ``answered`` under its
    key. ``reply_all`` answers every request with one reply (error cases). A request outside ``base_url``
    or matching no route gets a 404 and is recorded in ``unmatched``.
    """

    def __init__(self, base_url: str, fixtures: Path, routes: Mapping[str, str | Reply] | None = None,
                 reply_all: Reply | None = None) -> None:
        self.base = httpx.URL(base_url.rstrip("/"))
        self.fixtures = Path(fixtures)
        self.routes = [(key, _route(key), as_reply(value)) for key, value in (routes or {}).items()]
        self.reply_all = reply_all
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []
        self.answered: Counter[str] = Counter()
        super().__init__(self._handle)

    def _endless(self) -> str:
        """Why the extract never stopped: the request it kept making and the route that kept answering it."""
        asked = Counter(f"{r.method} {r.url.path}?{httpx.QueryParams(redact_obj(request_params(r)))}" for r in self.requests)
        (request, times), = asked.most_common(1)
        (route, _), = self.answered.most_common(1) or [("none", 0)]
        return (f"more than {MAX_REQUESTS} requests: paging does not end; {request} was asked {times} times and "
                f"route {route!r} answers the most: give the next page a route naming the parameter that asks for it")

    def _body(self, reply: Reply) -> bytes:
        return (self.fixtures / reply.file).read_bytes() if reply.file else b""

    def _respond(self, reply: Reply) -> httpx.Response:
        headers = {"content-type": "application/json", **reply.headers}
        return httpx.Response(reply.status, content=self._body(reply), headers=headers)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > MAX_REQUESTS:
            raise RuntimeError(self._endless())
        prefix = self.base.path.rstrip("/")
        url = request.url
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port) \
                or not (url.path == prefix or url.path.startswith(prefix + "/")):
            self.unmatched.append(f"{request.method} {url} (outside base_url {self.base})")
            return httpx.Response(404, json={"error": "outside base_url"})
        if self.reply_all is not None:
            return self._respond(self.reply_all)
        path, params = "/" + url.path[len(prefix):].strip("/"), request_params(request)
        candidates = [(len(p), key, reply) for key, (m, rp, p), reply in self.routes
                      if m == request.method and rp == path and all(params.get(k) == v for k, v in p.items())]
        if not candidates:
            shown = httpx.QueryParams(redact_obj(params))  # a form's sign or session masked
            self.unmatched.append(f"{request.method} {path}?{shown} (no fixture route)")
            return httpx.Response(404, json={"error": "no fixture route"})
        _, key, reply = max(candidates, key=lambda c: c[0])
        self.answered[key] += 1
        return self._respond(reply)


class RecordingTransport(httpx.BaseTransport):
    """Forwards to a real transport (a live loopback server) and records the requests."""

    def __init__(self, base_url: str) -> None:
        self.inner, self.base = httpx.HTTPTransport(), base_url.rstrip("/")
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []
        self.answered: Counter[str] = Counter()  # stays empty: a live server has no fixture routes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not str(request.url).startswith(self.base):
            self.unmatched.append(f"{request.method} {request.url} (outside base_url {self.base})")
        return self.inner.handle_request(request)
