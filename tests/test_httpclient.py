import threading
import time

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from shipetl import log, redact
from shipetl.errors import AuthError, NotFoundError, RunStopped, TerminalError, TransientError
from shipetl.httpclient import http_client, parse_retry_after
from shipetl.ratelimit import RateLimiter

SOURCE = "shipengine/acct-1"
API_KEY = "TEST_api_key_abcdef123"


@pytest.fixture(autouse=True)
def clean_registry():
    redact.clear_secrets()
    yield
    redact.clear_secrets()


class Script:
    """A MockTransport handler that replays a list of responses (or exceptions) in order."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def make(script, sleeps, **kw):
    kw.setdefault("headers", {"API-Key": API_KEY})
    return http_client(
        base_url="https://api.example", source=SOURCE, transport=httpx.MockTransport(script),
        sleep=sleeps.append, **kw,
    )


def ok(payload=None):
    return httpx.Response(200, json=payload if payload is not None else {"ok": True})


def test_429_retry_after_is_honoured_and_pauses_the_limiter():
    sleeps = []
    limiter_time = [0.0]
    limiter_sleeps = []

    def limiter_sleep(seconds):
        limiter_sleeps.append(seconds)
        limiter_time[0] += seconds

    limiter = RateLimiter([], max_in_flight=2, clock=lambda: limiter_time[0], sleep=limiter_sleep)
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    with make(script, sleeps, rate_limit=limiter) as client:
        assert client.get("/v1/labels").json() == {"ok": True}
    assert len(sleeps) == 1 and 7 <= sleeps[0] <= 7.5
    # The 429 paused the shared limiter, so the next slot (any thread's) waited it out too.
    assert limiter_sleeps == [pytest.approx(sleeps[0])]


def test_a_429_a_plugin_classifies_as_transient_keeps_its_retry_after_and_pauses_the_limiter():
    def classify(response):
        if response.status_code == 429:
            raise TransientError("rate limited")  # no wait of its own

    sleeps, limiter_sleeps, limiter_time = [], [], [0.0]

    def limiter_sleep(seconds):
        limiter_sleeps.append(seconds)
        limiter_time[0] += seconds

    limiter = RateLimiter([], max_in_flight=2, clock=lambda: limiter_time[0], sleep=limiter_sleep)
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    with make(script, sleeps, rate_limit=limiter, classify=classify) as client:
        assert client.get("/v1/labels").json() == {"ok": True}
    assert len(sleeps) == 1 and 7 <= sleeps[0] <= 7.5
    assert limiter_sleeps == [pytest.approx(sleeps[0])]


def test_shipengine_retryafter_spelling_and_http_date():
    sleeps = []
    script = Script(httpx.Response(429, headers={"RetryAfter": "3"}), ok())
    make(script, sleeps).get("/x")
    assert 3 <= sleeps[0] <= 3.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == pytest.approx(10)
    assert parse_retry_after({"X-RateLimit-Reset": "1445412490"}, now=1445412470.0) == pytest.approx(20)
    assert parse_retry_after({"X-RateLimit-Reset": "12"}, now=1445412470.0) == pytest.approx(12)
    assert parse_retry_after({}) is None


def test_retry_after_is_capped():
    sleeps = []
    script = Script(httpx.Response(503, headers={"Retry-After": "99999"}), ok())
    make(script, sleeps, backoff_max=2).get("/x")
    assert sleeps == [8]


def test_503_then_200_succeeds_with_jittered_backoff():
    sleeps = []
    script = Script(httpx.Response(503), httpx.Response(502), ok({"n": 1}))
    assert make(script, sleeps, backoff_base=0.5).json("GET", "/x") == {"n": 1}
    assert len(script.requests) == 3
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_connection_error_is_retried():
    sleeps = []
    script = Script(httpx.ConnectError("connection refused"), httpx.ReadTimeout("slow"), ok())
    assert make(script, sleeps).get("/x").status_code == 200
    assert len(sleeps) == 2


def test_truncated_json_is_retried():
    sleeps = []
    truncated = httpx.Response(200, content=b'{"orders": [{"id": 1', headers={"content-type": "application/json"})
    script = Script(truncated, ok({"orders": []}))
    assert make(script, sleeps).json("GET", "/orders") == {"orders": []}
    assert len(script.requests) == 2


def test_a_web_page_where_json_was_asked_fails_at_once_naming_base_url():
    """A base_url at a web server (nginx's welcome page): asking six times and calling it truncated JSON misled."""
    sleeps = []
    page = httpx.Response(200, content=b"\n<!DOCTYPE html><html><body>Welcome to nginx!</body></html>",
                          headers={"content-type": "text/html"})
    script = Script(page, ok())
    with pytest.raises(TerminalError) as info:
        make(script, sleeps).json("GET", "/v1/labels", params={"page": 1})
    assert len(script.requests) == 1 and sleeps == []
    assert str(info.value) == (f"source {SOURCE}: GET https://api.example/v1/labels answered HTTP 200 with a web page, not JSON: "
                               "the API is not there; check the source's base_url")


def test_truncated_json_is_retried_by_plain_request_when_declared_json():
    sleeps = []
    truncated = httpx.Response(200, content=b'{"a": ', headers={"content-type": "application/json; charset=utf-8"})
    script = Script(truncated, ok())
    assert make(script, sleeps).get("/x").json() == {"ok": True}
    assert len(sleeps) == 1


def test_exhaustion_raises_transient_error_naming_source_and_redacted_path():
    sleeps = []
    script = Script(*[httpx.Response(503) for _ in range(3)])
    client = make(script, sleeps, max_retries=2)
    with pytest.raises(TransientError) as info:
        client.get("/v1/orders", params={"access_token": "qq-secret-99", "page": 2})
    message = str(info.value)
    assert info.value.source == SOURCE
    assert message.startswith(f"{SOURCE}: GET /v1/orders?access_token=***&page=2 still failing after 3 attempts")
    assert message.endswith("HTTP 503: the API's own failure; the next run asks again")
    assert "qq-secret-99" not in message
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_error_line_cuts_a_long_query_and_keeps_the_path():
    """A signed request with fifty order ids must not make the run summary's failure line unreadable."""
    script = Script(*[httpx.Response(503) for _ in range(2)])
    order_ids = ",".join(f"2511{n:08d}" for n in range(50))
    with pytest.raises(TransientError) as info:
        make(script, [], max_retries=1).get("/api/v2/order/get_order_detail", params={"order_sn_list": order_ids, "page_size": 50})
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: GET /api/v2/order/get_order_detail?order_sn_list=251100000000%2C251100000001")
    hint = ": the API's own failure; the next run asks again"
    assert "…" in message and "page_size" not in message and len(message) < 200 + len(hint)
    assert message.endswith(f"still failing after 2 attempts: HTTP 503{hint}")


def test_a_rate_limit_that_lasts_says_what_to_change():
    script = Script(*[httpx.Response(429) for _ in range(2)])
    with pytest.raises(TransientError) as info:
        make(script, [], max_retries=1).get("/v1/tracking")
    assert str(info.value) == (f"{SOURCE}: GET /v1/tracking still failing after 2 attempts: HTTP 429: over the API's "
                               "rate limit; lower the source's rate_limit, or let the next run ask again")


def test_a_host_that_never_answers_is_named_without_the_query():
    script = Script(*[httpx.ConnectError("[Errno -2] Name or service not known") for _ in range(2)])
    with pytest.raises(TransientError) as info:
        make(script, [], max_retries=1).get("/v1/labels", params={"created_at_start": "2025-01-01T00:00:00Z", "page": 1})
    assert str(info.value) == (f"{SOURCE}: GET /v1/labels still failing after 2 attempts: cannot reach https://api.example: "
                               "ConnectError: [Errno -2] Name or service not known; check base_url and the network")


def test_401_raises_auth_error_without_the_secret():
    sleeps = []
    body = {"message": f"key {API_KEY} is invalid", "api_key": "whatever"}
    script = Script(httpx.Response(401, json=body))
    with pytest.raises(AuthError) as info:
        make(script, sleeps).get("/v1/labels")
    message = str(info.value)
    assert "credentials refused (HTTP 401)" in message and SOURCE in message
    assert API_KEY not in message and "whatever" not in message
    assert sleeps == []


def test_404_and_other_4xx_are_terminal_and_not_retried():
    sleeps = []
    with pytest.raises(NotFoundError):
        make(Script(httpx.Response(404)), sleeps).get("/v1/labels/x")
    long_body = "bad request " + "x" * 1000
    with pytest.raises(TerminalError) as info:
        make(Script(httpx.Response(400, text=long_body)), sleeps).post("/v1/labels", json={"a": 1})
    message = str(info.value)
    assert "POST /v1/labels" in message and "HTTP 400" in message
    assert len(message) < 400
    assert sleeps == []


def test_classify_transient_is_retried_with_its_retry_after():
    sleeps = []
    calls = []

    def classify(response):
        calls.append(response.status_code)
        if response.json().get("error") == "system_busy":
            raise TransientError("busy", retry_after=2)

    script = Script(ok({"error": "system_busy"}), ok({"error": ""}))
    assert make(script, sleeps, classify=classify).json("GET", "/x") == {"error": ""}
    assert calls == [200, 200]
    assert 2 <= sleeps[0] <= 2.5


def test_a_password_in_the_base_url_is_masked_in_request_logs(debug_logs):
    with capture_logs() as logs:
        http_client(base_url="https://proxyuser:Pr0xyPassw0rd@api.example", source=SOURCE,
                    transport=httpx.MockTransport(lambda request: ok()), sleep=lambda _s: None).get("/x")
    assert logs and "Pr0xyPassw0rd" not in str(logs) and redact.redact_text("Pr0xyPassw0rd") == "***"


def test_classify_terminal_error_is_raised_at_once_with_source():
    sleeps = []

    def classify(response):
        raise AuthError("invalid access_token")

    with pytest.raises(AuthError) as info:
        make(Script(ok()), sleeps, classify=classify).get("/x")
    assert info.value.source == SOURCE and sleeps == []


@pytest.fixture
def debug_logs():
    log.configure("json", "debug")  # a successful request is logged at debug, a failed one at info
    yield
    log.configure()


def test_logs_mask_secret_query_params_and_header_values(debug_logs):
    sleeps = []
    script = Script(httpx.Response(500), ok())
    with capture_logs() as logs:
        make(script, sleeps).get("/v1/orders", params={"sign": "abcdef0123", "shop_id": 5})
    requests = [e for e in logs if e["event"] == "http_request"]
    retries = [e for e in logs if e["event"] == "http_retry"]
    assert [e["status"] for e in requests] == [500, 200]
    assert [e["attempt"] for e in requests] == [1, 2]
    assert requests[0]["url"] == "https://api.example/v1/orders?sign=***&shop_id=5"
    assert requests[0]["source"] == SOURCE and isinstance(requests[0]["elapsed_ms"], float)
    assert retries[0]["reason"] == "http_500" and "delay_s" in retries[0]
    dumped = orjson.dumps(logs, default=str).decode()
    assert "abcdef0123" not in dumped
    # the header credential was registered, so it is masked even when it leaks into a message
    assert redact.redact_text(f"echo {API_KEY}") == "echo ***"
    assert script.requests[0].headers["API-Key"] == API_KEY


def test_limiter_slot_is_used_for_every_attempt():
    entered = []

    class CountingLimiter(RateLimiter):
        def slot(self):
            entered.append(1)
            return super().slot()

    sleeps = []
    limiter = CountingLimiter([], max_in_flight=1)
    make(Script(httpx.Response(502), ok()), sleeps, rate_limit=limiter).get("/x")
    assert len(entered) == 2


def test_a_stopping_run_ends_a_wait_to_retry_or_for_the_limiter_at_once():
    stop = threading.Event()
    limiter = RateLimiter([], max_in_flight=2)
    script = Script(*[httpx.Response(429, headers={"Retry-After": "60"})] * 3)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with make(script, [], rate_limit=limiter, stop=stop) as client, pytest.raises(RunStopped, match=SOURCE):
        client.get("/v1/labels")
    assert len(script.requests) == 1 and time.monotonic() - started < 30  # not the minute Retry-After asked for
    with make(Script(ok()), [], rate_limit=limiter, stop=stop) as client, pytest.raises(RunStopped):
        client.get("/v1/labels")  # the 429 paused the limiter a minute: the next request does not wait it out



# --- over loopback: replies read in pieces ---------------------------------------------------------------


class _Loopback:
    """A real HTTP server on 127.0.0.1 answering every GET with ``handler(self)`` (an http.server handler)."""

    def __init__(self, respond):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                respond(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_reply_that_trickles_in_fails_like_a_timeout_at_its_deadline():
    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        try:
            for _ in range(1000):  # a byte every 0.1 s: no single read waits the 0.5 s timeout
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the client gave up

    with _Loopback(drip) as url:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"no whole reply from http://127.0.0.1:[0-9]+: ReadTimeout: the reply was still arriving after 2 s"):
            http_client(base_url=url, source=SOURCE, timeout=0.5, max_retries=0).get("/x")
    assert time.monotonic() - started < 10


def test_a_compressed_reply_read_in_pieces_is_decoded_once():
    import gzip

    body = gzip.compress(orjson.dumps({"items": list(range(50_000))}))

    def gzipped(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with _Loopback(gzipped) as url, http_client(base_url=url, source=SOURCE) as client:
        assert client.json("GET", "/x") == {"items": list(range(50_000))}
        assert client.get("/x").headers["content-encoding"] == "gzip"
