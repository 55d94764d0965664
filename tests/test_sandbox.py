"""The sandbox framework: loopback only, mounting, admin routes and injected faults."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

try:
    import shipetl.sandbox  # noqa: F401
except ImportError:  # running without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shipetl.sandbox import Faults, SandboxSettings, build_app, running_sandbox
from shipetl.sandbox.seed import fake_id, rng


def echo_factory(settings: SandboxSettings) -> Starlette:
    """A tiny provider: ``GET /items`` returns a body long enough to cut; counts resets."""

    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"items": [{"id": i, "name": f"item-{i}"} for i in range(20)], "seed": settings.seed})

    app = Starlette(routes=[Route("/items", items)])
    app.state.resets = 0

    def reset() -> None:
        app.state.resets += 1

    app.state.reset = reset
    return app


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    """A client of a sandbox serving the echo provider on loopback; ``client.echo`` is that provider's app."""
    made: list[Starlette] = []

    def factory(settings: SandboxSettings) -> Starlette:
        made.append(echo_factory(settings))
        return made[-1]

    with running_sandbox({"echo": factory}, SandboxSettings(port=0)) as url, httpx.Client(base_url=url) as http:
        http.echo = made[0]
        yield http


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", ""])
def test_settings_refuse_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxSettings(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_settings_accept_loopback_hosts(host: str) -> None:
    assert SandboxSettings(host=host).host == host


def test_rng_is_stable_and_separated_by_name() -> None:
    assert [rng(42, "a", 1).random() for _ in range(3)] == [rng(42, "a", 1).random() for _ in range(3)]
    assert rng(42, "a").random() != rng(42, "b").random()
    assert rng(42, "a").random() != rng(43, "a").random()
    # Pinned values: hashlib-based, so they cannot drift with PYTHONHASHSEED or between runs.
    assert rng(42, "x").random() == 0.6371814677810032
    assert fake_id(rng(42, "x"), 8) == "95521048"


def test_index_lists_mounted_providers(client: httpx.Client) -> None:
    body = client.get("/").json()
    assert [p["name"] for p in body["providers"]] == ["echo"]
    assert body["providers"][0]["base_url"].endswith("/echo")
    assert client.get("/echo/items").json()["seed"] == 42


def test_bad_provider_name_is_refused() -> None:
    with pytest.raises(ValueError):
        build_app({"Bad/Name": echo_factory}, SandboxSettings())


def test_forced_429_has_retry_after_and_errors_body(client: httpx.Client) -> None:
    response = client.get("/echo/items", headers={"X-Sandbox-Fault": "429"})
    assert response.status_code == 429
    assert float(response.headers["Retry-After"]) == 1
    assert response.json()["errors"][0]["error_code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("code", [500, 502, 503])
def test_forced_5xx(client: httpx.Client, code: int) -> None:
    response = client.get("/echo/items", headers={"X-Sandbox-Fault": str(code)})
    assert response.status_code == code
    assert response.json()["errors"][0]["error_type"] == "system"


def test_forced_truncate_cuts_the_body_in_half(client: httpx.Client) -> None:
    full = client.get("/echo/items").content
    response = client.get("/echo/items", headers={"X-Sandbox-Fault": "truncate"})
    assert response.status_code == 200
    assert "content-length" not in response.headers
    assert response.content == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_forced_latency_delays(client: httpx.Client) -> None:
    started = time.monotonic()
    assert client.get("/echo/items", headers={"X-Sandbox-Fault": "latency=150"}).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_stats_count_injected_faults_and_reset_clears_them(client: httpx.Client) -> None:
    before = client.get("/_sandbox/stats").json()["requests"]  # running_sandbox's own GET / until it is up
    for fault in ("429", "503", "503", "truncate", "latency=1,500"):
        client.get("/echo/items", headers={"X-Sandbox-Fault": fault})
    client.get("/echo/items")
    stats = client.get("/_sandbox/stats").json()
    assert stats["requests"] - before == 6 and stats["forced"] == 5
    assert stats["faults"] == {"429": 1, "500": 1, "502": 0, "503": 2, "truncate": 1, "latency": 1}
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/stats").json()["total_faults"] == 0
    assert client.echo.state.resets == 1  # the provider's reset callback was registered and called


def test_admin_routes_are_never_faulted(client: httpx.Client) -> None:
    assert client.get("/_sandbox/stats", headers={"X-Sandbox-Fault": "503"}).status_code == 200


def test_random_faults_follow_rates_and_repeat_after_reset(client: httpx.Client) -> None:
    settings = {"rate_429": 0.3, "rate_5xx": 0.2, "rate_truncate": 0.1, "seed": 7}
    assert client.post("/_sandbox/faults", json=settings).status_code == 200
    assert client.get("/_sandbox/faults").json()["rate_429"] == 0.3

    def statuses() -> list[int]:
        return [client.get("/echo/items").status_code for _ in range(60)]

    first = statuses()
    stats = client.get("/_sandbox/stats").json()
    assert stats["faults"]["429"] == first.count(429) > 5
    assert stats["faults"]["500"] + stats["faults"]["503"] > 3 and stats["faults"]["truncate"] > 0
    client.post("/_sandbox/reset")
    assert statuses() == first


def test_bad_faults_body_is_refused(client: httpx.Client) -> None:
    assert client.post("/_sandbox/faults", json={"rate_429": 2}).status_code == 400
    assert client.post("/_sandbox/faults", json={"nope": 1}).status_code == 400
    assert Faults.from_dict({"latency_ms": 5}).latency_ms == 5


def test_running_sandbox_serves_real_http_and_stops() -> None:
    with running_sandbox({"echo": echo_factory}, SandboxSettings(port=0)) as base:
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(base + "/echo/items").json()["seed"] == 42
        cut = httpx.get(base + "/echo/items", headers={"X-Sandbox-Fault": "truncate"})
        assert cut.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(cut.content)
        assert httpx.get(base + "/_sandbox/stats").json()["faults"]["truncate"] == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/", timeout=1)
