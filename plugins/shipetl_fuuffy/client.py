"""Fuuffy endpoints, client-credentials tokens and the error envelope, on shipetl's HTTP client.

Facts from seed 001 and providers.md 4.1-4.3 and 6.4: a Bearer token from ``POST /v1/auth/token`` (form
body, no refresh token, 3600 s), ``Content-Type: application/json`` even on GET, failures as
``{"error": {code, code_reason, message, error_code?, error_trace?}}`` with string codes, and
``X-RateLimit-Remaining`` / ``-Reset`` (epoch seconds) on replies.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import orjson

from shipetl import (
    AuthError,
    ExtractContext,
    HttpClient,
    NotFoundError,
    SkipRecord,
    TerminalError,
    TokenPair,
    TransientError,
    not_the_api,
)

PROVIDER = "fuuffy"
TOKEN_PATH = "/v1/auth/token"
ORDER_LIST_PATH = "/v1/order/list"
TRACKING_PATH = "/v1/tracking/get"
TRACKING_BY_ORDER_PATH = "/v1/tracking/get/{order_id}"
PAGE_SIZE_MAX = 100
# The zone of naive times (event ``date``, order times) and of the date filters; Fuuffy does not state it
# (UNCONFIRMED, providers.md 4.4 and 5): Hong Kong, UTC+8 all year. A source's ``timezone:`` overrides it.
DEFAULT_TIMEZONE = "Asia/Hong_Kong"
TOKEN_RENEW_AHEAD = timedelta(seconds=60)
DEFAULT_EXPIRES_IN_S = 3600

# Error codes (strings) and the envelope fields that carry them.
TOKEN_REJECTED_CODES = {"401000", "invalid_token"}
BAD_CLIENT_CODES = {"401021", "invalid_client_id_or_client_secret", "invalid_client"}
RATE_LIMITED_CODES = {"rate_limit_exceeded"}
UPSTREAM_FAILURE_CODES = {"500999"}
ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
TRACKING_NUMBER_REQUIRED = "TRACKING_NUMBER_REQUIRED"
REMAINING_HEADER = "X-RateLimit-Remaining"
RESET_HEADER = "X-RateLimit-Reset"
_EPOCH_THRESHOLD = 1_000_000_000
_FALLBACK_RATE_WAIT_S = 1.0


class TokenRejected(AuthError):
    """The Bearer token was refused (``401000`` / ``invalid_token``): get a new one and ask again, once."""


class ForbiddenRecord(NotFoundError):
    """HTTP 403: the record belongs to another member; skipped and counted, the run goes on."""


class CourierFailure(TransientError):
    """``500999``: Fuuffy or the courier behind it failed; retried a few times, then skipped for this run."""


def _send(http: HttpClient, path: str, params: dict[str, Any] | None, headers: dict[str, str]) -> bytes:
    """One GET through core's retries; a ``500999`` that outlasts them becomes :class:`SkipRecord`."""
    try:
        return http.get(path, params=params, headers=headers).content
    except TransientError as exc:
        if isinstance(exc.__cause__, CourierFailure):
            raise SkipRecord(f"{path}: still failing upstream after retries (500999)", source=exc.source) from None
        raise


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of a reply (``{"error": {...}}``, top-level fields, or ``error`` as a JSON string)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(body, dict):
        return {}
    error = body.get("error")
    if isinstance(error, str):
        try:
            error = orjson.loads(error)
        except orjson.JSONDecodeError:
            error = {"message": error}
    if isinstance(error, dict):
        return error
    # The seed's 401 schema puts the fields at the top level.
    return body if "code" in body and "data" not in body else {}


def _describe(error: dict[str, Any]) -> str:
    parts = [str(error.get(k)) for k in ("code", "code_reason", "error_code") if error.get(k)]
    text = " ".join(parts) or "no error code"
    if error.get("message"):
        text += f": {error['message']}"
    trace = error.get("error_trace")
    if isinstance(trace, list):
        fields = [f"{t.get('field')}: {t.get('message')}" for t in trace if isinstance(t, dict)]
        if fields:
            text += f" ({'; '.join(fields)})"
    elif isinstance(trace, dict) and trace:
        text += f" ({'; '.join(f'{k}: {v}' for k, v in trace.items())})"
    return text


def _seconds_until(reset: str | None, now: float) -> float | None:
    try:
        value = float(reset) if reset else None
    except ValueError:
        return None
    if value is None:
        return None
    return max(0.0, value - now if value > _EPOCH_THRESHOLD else value)


def classify(response: httpx.Response) -> None:
    """Turn Fuuffy's error envelope into typed errors (providers.md 4.3); successes pass."""
    status = response.status_code
    error = error_of(response)
    if status < 400 and not error:
        return
    code = str(error.get("code") or "").strip()
    detail = str(error.get("error_code") or "").strip().upper()
    what = _describe(error) if error else f"HTTP {status}"
    if code in BAD_CLIENT_CODES or (error.get("code_reason") or "").lower() in BAD_CLIENT_CODES:
        raise AuthError("client id or secret refused (401021); check credentials.client_id and credentials.client_secret")
    if code in TOKEN_REJECTED_CODES or status == 401:
        raise TokenRejected(f"access token refused ({what})")
    if status == 429 or code in RATE_LIMITED_CODES:
        wait = _seconds_until(response.headers.get(RESET_HEADER), time.time())
        raise TransientError(f"rate limited ({what})", retry_after=_FALLBACK_RATE_WAIT_S if wait is None else wait)
    if code in UPSTREAM_FAILURE_CODES:
        raise CourierFailure(f"upstream failure ({what})")
    if status >= 500:
        raise TransientError(f"HTTP {status} ({what})")
    if status == 403:
        raise ForbiddenRecord(f"forbidden ({what})")
    if status == 404 and not error:
        raise not_the_api(response, "Fuuffy")
    if status == 404:
        raise NotFoundError(f"not found ({what})")
    if detail == ORDER_NOT_FOUND:
        raise NotFoundError(f"order not found ({what})")
    if detail == TRACKING_NUMBER_REQUIRED:
        raise TerminalError(f"tracking request built without an order id or tracking number, a bug in shipetl_fuuffy ({what})")
    raise TerminalError(f"request refused: HTTP {status} {what}")


def decoded_data(body: Any) -> Any:
    """``body["data"]``, JSON-decoded when Fuuffy sends it as a string (seed 001 types it "json-string")."""
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, (str, bytes)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    return data


class FuuffyClient:
    """The calls the extractor makes, one method each, all behind a valid Bearer token."""

    def __init__(self, ctx: ExtractContext, *, max_retries: int) -> None:
        self.ctx = ctx
        self.client_id = ctx.secret("client_id")
        self._client_secret = ctx.secret("client_secret")
        # Which credentials a stored token was issued to, without keeping the secret itself beside it.
        self._credentials_hash = hashlib.sha256(f"{self.client_id}\x1f{self._client_secret}".encode()).hexdigest()[:16]
        self.http: HttpClient = ctx.http(classify=self._classify, max_retries=max_retries)

    # --- auth -----------------------------------------------------------------------------------

    def _new_token(self, current: TokenPair | None) -> TokenPair:
        try:
            response = self.http.post(TOKEN_PATH, data={
                "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._client_secret,
            })
        except TokenRejected as exc:  # some gateways answer bad client credentials with a plain 401
            raise AuthError("client id or secret refused; check credentials.client_id and credentials.client_secret",
                            source=exc.source) from None
        data = decoded_data(orjson.loads(response.content)) or {}
        token = data.get("access_token")
        if not token:
            raise TerminalError("token reply carries no data.access_token")
        lifetime = int(data.get("expires_in") or DEFAULT_EXPIRES_IN_S)
        return TokenPair(token, self.ctx.tokens.clock() + timedelta(seconds=lifetime),
                         extra={"client_id": self.client_id, "credentials": self._credentials_hash})

    def token(self, *, stale: TokenPair | None = None) -> TokenPair:
        """A token good for at least a minute: the stored one, or a new one (also after ``stale`` was refused).

        A stored token issued to other credentials (a changed client id or secret) is not used: the new
        ones are tried at once, so a wrong secret fails this run (and ``shipetl check``), not one an hour on.
        """
        name, account = PROVIDER, self.ctx.account_id
        current = self.ctx.tokens.load(name, account)
        if current is not None and current.extra.get("credentials") != self._credentials_hash:
            stale = current
        return self.ctx.tokens.valid(name, account, self._new_token, ahead=TOKEN_RENEW_AHEAD,
                                     force=stale is not None, stale=stale)

    def _headers(self, pair: TokenPair) -> dict[str, str]:
        return {"Authorization": f"Bearer {pair.access_token}", "Content-Type": "application/json"}

    def _classify(self, response: httpx.Response) -> None:
        self._obey_rate_headers(response)
        classify(response)

    def _obey_rate_headers(self, response: httpx.Response) -> None:
        """When a reply says no request is left in the window, hold every request until it resets."""
        limiter = self.http.rate_limit
        if limiter is None or (response.headers.get(REMAINING_HEADER) or "").strip() != "0":
            return
        wait = _seconds_until(response.headers.get(RESET_HEADER), time.time())
        if wait is not None:
            limiter.pause_for(wait)

    def get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """GET with the current token; a refused token is replaced once, a second refusal is an AuthError.

        :raises SkipRecord: ``500999`` still failing after the retries. :raises NotFoundError: unknown
            order (``ORDER_NOT_FOUND``, 404) or another member's (:class:`ForbiddenRecord`, 403).
        """
        pair = self.token()
        try:
            return _send(self.http, path, params, self._headers(pair))
        except TokenRejected:
            self.ctx.log.info("token_rejected", action="renewing")
        pair = self.token(stale=pair)
        try:
            return _send(self.http, path, params, self._headers(pair))
        except TokenRejected as exc:
            raise AuthError("a freshly issued access token was refused too; check that credentials.client_id "
                            "may use this API", source=exc.source) from None

    # --- endpoints --------------------------------------------------------------------------------

    def order_pages(self, start: date, end: date, page_size: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Every page of orders created from ``start`` to ``end`` (dates as Fuuffy filters), by order id."""
        page = 1
        while True:
            raw = self.get(ORDER_LIST_PATH, {
                "start_date": start.isoformat(), "end_date": end.isoformat(), "sort_key": "order_id",
                "sort_dir": "ASC", "page": page, "limit": page_size,
            })
            body = orjson.loads(raw)
            data = decoded_data(body) or {}
            yield raw, data
            pagination = body.get("pagination") or data.get("pagination") or {}
            total_pages = int(pagination.get("total_pages") or 0)
            if page >= total_pages or not data.get("order_list"):
                return
            page += 1

    def tracking_by_order(self, order_id: str) -> bytes:
        return self.get(TRACKING_BY_ORDER_PATH.format(order_id=order_id))

    def tracking_by_number(self, tracking_number: str) -> bytes:
        return self.get(TRACKING_PATH, {"tracking_number": tracking_number})

    def close(self) -> None:
        self.http.close()
