"""The one HTTP client every plugin uses: retries, backoff, rate limits, error mapping, redacted logs."""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from shipetl.errors import AuthError, NotFoundError, RunStopped, SourceError, TerminalError, TransientError
from shipetl.log import get_logger
from shipetl.ratelimit import RateLimiter
from shipetl.redact import SECRET_KEYS, redact_text, register_secret

Classify = Callable[[httpx.Response], None]

# ShipEngine's SDK spells it without the dash; both are honoured.
RETRY_AFTER_HEADERS = ("Retry-After", "RetryAfter")
RATE_RESET_HEADER = "X-RateLimit-Reset"
# An X-RateLimit-Reset above this is an epoch instant, below it a number of seconds.
_EPOCH_THRESHOLD = 1_000_000_000
_EXCERPT_CHARS = 200

_log = get_logger()


class _Retry(Exception):  # noqa: N818 - internal signal, never escapes this module
    """This attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, failure: str, retry_after: float | None = None) -> None:
        super().__init__(failure)
        self.reason = reason
        self.failure = failure
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After``/``RetryAfter`` (seconds or HTTP-date) or ``X-RateLimit-Reset``."""
    now = time.time() if now is None else now
    for name in RETRY_AFTER_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - now)
    reset = headers.get(RATE_RESET_HEADER)
    if reset:
        try:
            seconds = float(reset.strip())
        except ValueError:
            return None
        return max(0.0, seconds - now if seconds > _EPOCH_THRESHOLD else seconds)
    return None


def _declares_json(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _redacted_target(url: httpx.URL) -> str:
    return redact_text(url.raw_path.decode("ascii", errors="replace"))


# The whole of a reply must arrive within this many times the per-read timeout.
REPLY_DEADLINE_FACTOR = 4

# An error line names the request by its path and the start of its query; the http_request log has it whole.
_SHOWN_QUERY_CHARS = 80


def _shown(target: str) -> str:
    """``target`` (path and query) for a one-line error: a long query (signed, or fifty order ids) is cut."""
    path, sep, query = target.partition("?")
    if len(query) <= _SHOWN_QUERY_CHARS:
        return target
    return f"{path}{sep}{query[:_SHOWN_QUERY_CHARS]}…"


def _status_failure(status: int) -> str:
    """What a retried status says, with what to do should it last past every retry."""
    if status == 429:
        return "HTTP 429: over the API's rate limit; lower the source's rate_limit, or let the next run ask again"
    return f"HTTP {status}: the API's own failure; the next run asks again"


def not_the_api(response: httpx.Response, api: str, lacking: str | None = None) -> TerminalError:
    """The error for a reply that is not ``api``'s: the request reached something other than the API (a wrong
    ``base_url``), which must fail the source rather than count every record as not found, or load nothing and
    call it a night.

    Without ``lacking``, for an HTTP 404 whose body is not ``api``'s own error; with it, for a success whose body
    lacks ``lacking``, which every reply of ``api`` to that request carries (``"a labels list"``).
    """
    said = f"without {lacking}" if lacking else f"with no {api} error body"
    return TerminalError(f"{_asked(response.request)} answered HTTP {response.status_code} {said}: {api} is not "
                         f"there; check the source's base_url")


def _origin(url: httpx.URL) -> str:
    """Scheme, host and port of ``url``: no user:password@ of a base_url."""
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _asked(request: httpx.Request) -> str:
    """Method, scheme, host, port and path of a request: no query, nor any user:password@ of the base_url."""
    return request.method + " " + redact_text(_origin(request.url) + request.url.path)


def _excerpt(response: httpx.Response) -> str:
    # Redact before cutting, so a secret straddling the cut is still recognised whole.
    text = redact_text(response.text[:4000])
    return " ".join(text.split())[:_EXCERPT_CHARS]


def _register_header_secrets(headers: Mapping[str, str] | None) -> None:
    for name, value in (headers or {}).items():
        if name.lower() in SECRET_KEYS and isinstance(value, str):
            register_secret(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.lower() in ("bearer", "basic", "token"):
                register_secret(credential)


class HttpClient:
    """A thread-safe wrapper over ``httpx.Client``; build it with :func:`http_client`."""

    def __init__(
        self,
        *,
        base_url: str,
        source: str,
        headers: dict[str, str] | None,
        rate_limit: RateLimiter | None,
        timeout: float,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        classify: Classify | None,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
        stop: threading.Event | None = None,
    ) -> None:
        _register_header_secrets(headers)
        self.source = source
        self.rate_limit = rate_limit
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._classify = classify
        self._sleep = sleep
        self._stop = stop
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        # httpx's timeout bounds each read, so a server sending a byte every few seconds would hold a request
        # (and the run) for ever: the whole reply must arrive within this many seconds.
        self._reply_deadline_s = timeout * REPLY_DEADLINE_FACTOR

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, retrying transient failures; return the successful response.

        :raises TransientError: still failing after every retry (429, 5xx, network, truncated JSON).
        :raises AuthError: HTTP 401/403. :raises NotFoundError: HTTP 404.
        :raises TerminalError: any other 4xx; or whatever ``classify`` raises that is not transient.
        """
        response, _ = self._send(method, path, False, params=params, json=json, data=data, headers=headers)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like :meth:`request` but return the decoded JSON body; an undecodable body is retried."""
        _, body = self._send(method, path, True, **kwargs)
        return body

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """``request("GET", path, ...)``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """``request("POST", path, ...)``."""
        return self.request("POST", path, **kwargs)

    def _slot(self) -> contextlib.AbstractContextManager[None]:
        if self.rate_limit is None:
            return contextlib.nullcontext()
        return self.rate_limit.slot(self._wait) if self._stop is not None else self.rate_limit.slot()

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``; with a ``stop`` event, end the wait when it is set by raising RunStopped."""
        if self._stop is None:
            self._sleep(seconds)
        elif self._stop.wait(seconds):
            raise RunStopped(f"{self.source}: the run is stopping")

    def _send(self, method: str, path: str, want_json: bool, **kwargs: Any) -> tuple[httpx.Response, Any]:
        method = method.upper()
        _register_header_secrets(kwargs.get("headers"))
        request = self._client.build_request(method, path, **kwargs)
        target = _redacted_target(request.url)
        attempts = self.max_retries + 1
        last = _Retry("none", "no attempt made")
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(request, attempt, target, want_json)
            except _Retry as retry:
                last = retry
                if attempt == attempts:
                    break
                delay = self._delay(attempt - 1, retry.retry_after)
                if retry.reason == "http_429" and self.rate_limit is not None:
                    self.rate_limit.pause_for(delay)
                _log.warning(
                    "http_retry", source=self.source, method=method, url=target, attempt=attempt,
                    reason=retry.reason, delay_s=round(delay, 3),
                )
                self._wait(delay)
        # Where no reply came, the host says what is wrong and the query only lengthens the line.
        shown = target.partition("?")[0] if last.reason == "transport_error" else _shown(target)
        raise TransientError(
            f"{self.source}: {method} {shown} still failing after {attempts} attempts: {last.failure}",
            source=self.source,
            retry_after=last.retry_after,
        ) from (last.__cause__ or last)

    def _attempt(
        self, request: httpx.Request, attempt: int, target: str, want_json: bool
    ) -> tuple[httpx.Response, Any]:
        url = redact_text(str(request.url))
        with self._slot():
            started = time.perf_counter()
            try:
                response = self._receive(request)
            except httpx.TransportError as exc:
                elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
                _log.info(
                    "http_request", source=self.source, method=request.method, url=url, status=None,
                    elapsed_ms=elapsed_ms, attempt=attempt, error=type(exc).__name__,
                )
                where = _origin(request.url)
                what = f"no whole reply from {where}" if isinstance(exc, httpx.ReadTimeout) else f"cannot reach {where}"
                raise _Retry("transport_error", f"{what}: {type(exc).__name__}: {redact_text(str(exc))}; "
                                                "check base_url and the network") from exc
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        status = response.status_code
        # Every request at debug (--log-level debug); failed ones where a nightly log shows them.
        (_log.debug if status < 400 else _log.info)(
            "http_request", source=self.source, method=request.method, url=url, status=status,
            elapsed_ms=elapsed_ms, attempt=attempt,
        )
        body = self._decode(response, want_json)
        if self._classify is not None:
            try:
                self._classify(response)
            except TransientError as exc:
                # A 429 the plugin classified is still a 429: its Retry-After holds unless the plugin gave its own
                # wait, and it pauses the account's rate limit for every thread.
                retry_after = exc.retry_after if exc.retry_after is not None or status != 429 else (
                    parse_retry_after(response.headers))
                raise _Retry("http_429" if status == 429 else "classified_transient", redact_text(str(exc)),
                             retry_after) from exc
            except SourceError as exc:
                if exc.source is None:
                    exc.source = self.source
                raise
        if status == 429 or status >= 500:
            raise _Retry(f"http_{status}", _status_failure(status), parse_retry_after(response.headers))
        self._raise_for_status(response, request.method, target)
        return response, body

    def _receive(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read its whole reply within the reply deadline (a ``ReadTimeout`` past it, retried as
        any timeout); a stopping run ends the wait at the next piece of the reply."""
        deadline = time.monotonic() + self._reply_deadline_s
        response = self._client.send(request, stream=True)
        if response.is_stream_consumed:  # a transport that hands over whole replies (httpx.MockTransport)
            return response
        try:
            raw = []
            for chunk in response.iter_raw():
                raw.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"the reply was still arriving after {self._reply_deadline_s:.0f} s",
                                            request=request)
                if self._stop is not None and self._stop.is_set():
                    raise RunStopped(f"{self.source}: the run is stopping")
        finally:
            response.close()
        # As received: the new response decodes the raw bytes by their Content-Encoding, as httpx's read would.
        return httpx.Response(response.status_code, headers=response.headers, content=b"".join(raw), request=request,
                              extensions=response.extensions)

    def _decode(self, response: httpx.Response, want_json: bool) -> Any:
        """Decode a successful JSON body; a body that fails to decode was cut short, so retry, unless it is a web
        page (markup) where JSON was asked for: a wrong ``base_url``, a TerminalError."""
        if response.status_code >= 400:
            return None
        if not want_json and not (_declares_json(response) and response.content):
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            if want_json and response.content.lstrip()[:1] == b"<":  # a web page: whole, and no retry makes it JSON
                raise TerminalError(f"source {self.source}: {_asked(response.request)} answered HTTP {response.status_code} with a web page, "
                                    "not JSON: the API is not there; check the source's base_url", source=self.source) from None
            failure = f"HTTP {response.status_code}: undecodable JSON body ({len(response.content)} bytes)"
            raise _Retry("truncated_json", failure) from exc

    def _raise_for_status(self, response: httpx.Response, method: str, target: str) -> None:
        status = response.status_code
        if status < 400:
            return
        where = f"{method} {_shown(target)}"
        if status in (401, 403):
            raise AuthError(
                f"source {self.source}: credentials refused (HTTP {status}) on {where}; "
                f"check this source's credentials: {_excerpt(response)}",
                source=self.source,
            )
        if status == 404:
            raise NotFoundError(f"source {self.source}: {where} not found (HTTP 404)", source=self.source)
        raise TerminalError(
            f"source {self.source}: {where} was rejected (HTTP {status}): {_excerpt(response)}",
            source=self.source,
        )

    def _delay(self, retry_index: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, or the server's own wait plus a little jitter."""
        if retry_after is not None:
            return min(retry_after + random.uniform(0, min(self.backoff_base, 1.0)), self.backoff_max * 4)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**retry_index))


def http_client(
    *,
    base_url: str,
    source: str,
    headers: dict[str, str] | None = None,
    rate_limit: RateLimiter | None = None,
    timeout: float = 30.0,
    max_retries: int = 5,
    backoff_base: float = 0.5,
    backoff_max: float = 30.0,
    classify: Classify | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> HttpClient:
    """Build the client a plugin uses for one source.

    :param source: names the source in logs and errors (``shipengine/acct-1``).
    :param headers: sent on every request; values under secret names (``Authorization``,
        ``API-Key``...) are registered with :mod:`shipetl.redact` so they never reach a log.
    :param rate_limit: shared limiter, usually from :func:`shipetl.ratelimit.limiter_for`.
    :param max_retries: retries after the first attempt, so at most ``max_retries + 1`` requests.
    :param classify: the provider's envelope check, called on every response before the default
        status mapping. It may raise ``TransientError`` (retried, its ``retry_after`` honoured),
        or ``AuthError``/``NotFoundError``/``TerminalError`` (raised at once); it must cope with
        non-JSON bodies, since it also sees 429 and 5xx responses.
    :param transport: for tests, e.g. ``httpx.MockTransport``.
    :param sleep: how to wait between retries; tests pass a fake.
    :param stop: the run's stop event: once set, a wait to retry or for the rate limit ends at once with
        :class:`~shipetl.errors.RunStopped` (the runner then loads what was fetched).
    """
    register_secret(httpx.URL(base_url).password)  # a user:password@ in a base_url is a credential too
    return HttpClient(
        base_url=base_url, source=source, headers=headers, rate_limit=rate_limit, timeout=timeout,
        max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max,
        classify=classify, transport=transport, sleep=sleep, stop=stop,
    )
