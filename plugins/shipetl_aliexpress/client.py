"""AliExpress Open Platform calls: TOP signing, token create/refresh, and both error layers (providers.md 2.2-2.5).

Business APIs go to ``<base_url>/sync`` with the API name in ``method``; system APIs (tokens) to
``<base_url>/rest<path>``. Every call is a form POST, so ``sign`` and ``session`` never appear in a URL
(and so never in a request log). Errors come in two layers, checked on every call: the gateway's
``error_response`` (see :func:`gateway_error`) and the business ``result.ret = false`` under HTTP 200.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson

from shipetl import (
    AuthError,
    ConfigError,
    ExtractContext,
    NotFoundError,
    SourceError,
    TerminalError,
    TokenPair,
    TransientError,
    not_the_api,
)

SYNC_PATH = "/sync"
REST_PREFIX = "/rest"
TOKEN_CREATE_PATH = "/auth/token/create"
TOKEN_REFRESH_PATH = "/auth/token/refresh"
ORDER_GET = "aliexpress.trade.ds.order.get"
TRACKING_GET = "aliexpress.ds.order.tracking.get"
SIGN_METHOD = "sha256"
PROVIDER = "aliexpress"

# Gateway codes (providers.md 2.5). The invalid-session code is UNCONFIRMED: accept the usual spellings.
CALL_LIMIT = "ApiCallLimit"
DEFAULT_CALL_LIMIT_WAIT_S = 1.0
SESSION_CODES = frozenset({"IllegalAccessToken", "InvalidSession", "SessionExpired", "IllegalSession"})
CREDENTIAL_CODES = {
    "IncompleteSignature": "the request signature was refused; check credentials.app_secret (it must belong "
                           "to options.app_key)",
    "InvalidAppKey": "the app key is unknown; check options.app_key",
    "AppKeyNotExist": "the app key is unknown; check options.app_key",
}
# Token calls: a refresh token spent, expired or revoked; an authorization code used or expired.
REFRESH_REFUSED_CODES = frozenset({"IllegalRefreshToken"})
AUTH_CODE_REFUSED_CODES = frozenset({"InvalidCode"})
REAUTHORIZE = ("authorize the app for this seller again and put the new code in credentials.auth_code "
               "(a code is single-use and short-lived)")
TIMESTAMP_CODES = frozenset({"InvalidTimestamp", "IllegalTimestamp"})
PERMISSION_SUB_CODES = frozenset({"isv.insufficient-permission"})
TRANSIENT_TYPES = frozenset({"ISP", "SYSTEM"})
# Business layer: "no parcel data yet" / "no such order", a counted miss, never a failure.
NOT_FOUND_CODES = frozenset({"1001"})
NOT_FOUND_WORDS = ("NOT FOUND", "NOT EXIST")
# Renew an access token this long before it expires.
TOKEN_AHEAD = timedelta(minutes=10)
# A token reply that states no lifetime (never seen) is trusted for an hour.
FALLBACK_TOKEN_LIFE = timedelta(hours=1)

_BAN_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:more\s+)?s(?:ec(?:ond)?s?)?\b", re.IGNORECASE)


def sign(params: Mapping[str, Any], app_secret: str, api_path: str | None = None) -> str:
    """The TOP signature: HMAC-SHA256 over ``api_path`` + sorted ``key+value`` pairs, as uppercase hex.

    ``sign`` itself and empty values are left out; ``api_path`` (``/auth/token/create``) only for
    system APIs, never for ``/sync`` calls.
    """
    message = (api_path or "") + "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hmac.new(app_secret.encode(), message.encode(), hashlib.sha256).hexdigest().upper()


def ban_seconds(msg: str | None) -> float:
    """How long an ``ApiCallLimit`` ban lasts, read from its message; 1 s when the message gives no number."""
    match = _BAN_SECONDS.search(msg or "")
    return float(match.group(1)) if match else DEFAULT_CALL_LIMIT_WAIT_S


class SessionRejected(AuthError):
    """The gateway refused the access token; the client refreshes it once and tries again."""


class RefreshRefused(AuthError):
    """The token API refused the stored refresh token; a new authorization code is the way back."""


def gateway_error(err: Mapping[str, Any]) -> SourceError:
    """The typed error for a gateway ``error_response`` (or a flat ``/rest`` error reply).

    ``sub_code`` wins over ``type``: an ISP error with ``isv.insufficient-permission`` is permanent.
    """
    code, sub_code = str(err.get("code") or ""), str(err.get("sub_code") or "")
    kind = str(err.get("type") or "").upper()
    msg = err.get("sub_msg") or err.get("msg") or err.get("message") or ""
    where = f"AliExpress {code}{'/' + sub_code if sub_code else ''}: {msg}"
    if code == CALL_LIMIT or sub_code == CALL_LIMIT:
        return TransientError(f"{where} (throttled)", retry_after=ban_seconds(msg))
    if sub_code in PERMISSION_SUB_CODES:
        return TerminalError(f"{where}; the app lacks permission for this API: grant it in the AliExpress console")
    if code in SESSION_CODES:
        return SessionRejected(f"{where}; the access token was refused")
    if code in REFRESH_REFUSED_CODES:
        return RefreshRefused(f"{where}; the stored refresh token was refused")
    if code in AUTH_CODE_REFUSED_CODES:
        return AuthError(f"AliExpress refused credentials.auth_code ({code}): {REAUTHORIZE}")
    if code in CREDENTIAL_CODES:
        return AuthError(f"AliExpress refused the credentials ({code}): {CREDENTIAL_CODES[code]}")
    if code in TIMESTAMP_CODES:
        return AuthError(f"AliExpress refused the request timestamp ({code}): this machine's clock is off by more "
                         "than the gateway allows; synchronise it (NTP)")
    if sub_code.startswith("isp.") or (not sub_code.startswith("isv.") and kind in TRANSIENT_TYPES):
        return TransientError(where)
    return TerminalError(where)


def classify(response: httpx.Response) -> None:
    """The gateway layer, for the core HTTP client: raise the typed error of an ``error_response``.

    The gateway answers every method at one path, with its errors in the body: an HTTP 404 without one means
    the request went somewhere else (a wrong ``base_url``), never an unknown order.
    """
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        if response.status_code == 404:
            raise not_the_api(response, "AliExpress")
        return  # core's status handling (5xx retried, other 4xx terminal) decides
    if response.status_code == 404 and "error_response" not in body and "code" not in body:
        raise not_the_api(response, "AliExpress")
    if isinstance(body.get("error_response"), dict):
        raise gateway_error(body["error_response"])
    # /rest replies are flat: code "0" is success, anything else an error.
    if "code" in body and str(body["code"]) != "0" and ("type" in body or "message" in body):
        raise gateway_error(body)


def _ret_ok(result: Any) -> bool:
    ret = result.get("ret", True) if isinstance(result, dict) else True
    return ret is True or str(ret).lower() == "true"


@dataclass(frozen=True)
class Reply:
    """A business API reply: the bytes as received (for the raw zone) and its ``result`` object."""

    content: bytes
    result: dict[str, Any]


class AliExpressClient:
    """Signed calls for one account, with its token pair kept valid in ``ctx.tokens``."""

    def __init__(self, ctx: ExtractContext, *, app_key: str | None = None, language: str = "en_US",
                 clock: Callable[[], float] = time.time, http_overrides: Mapping[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.label = f"{ctx.source_name}/{ctx.account_id}"
        self.app_key = app_key or ctx.secret("app_key")
        self._secret = ctx.secret("app_secret")
        self.language = language
        self.clock = clock
        # The quota is the app key's, shared by every seller account it serves (providers.md 2.5).
        self.http = ctx.http(classify=classify, rate_limit_key=f"aliexpress/app-{self.app_key}", **(http_overrides or {}))
        self._pair: TokenPair | None = None

    def close(self) -> None:
        self.http.close()

    # --- signing and sending ------------------------------------------------------------------

    def _signed(self, params: Mapping[str, Any], api_path: str | None = None) -> dict[str, str]:
        full = {"app_key": self.app_key, "sign_method": SIGN_METHOD, "timestamp": str(int(self.clock() * 1000)),
                **{k: str(v) for k, v in params.items() if v is not None and v != ""}}
        full["sign"] = sign(full, self._secret, api_path)
        return full

    def _post(self, path: str, form: dict[str, str]) -> httpx.Response:
        try:
            return self.http.request("POST", path, data=form)
        except SourceError as exc:
            # Core's own errors already name the source; the gateway errors raised by classify do not.
            named = exc.source or self.label
            if not str(exc).startswith((f"source {named}", f"{named}:")):
                exc.args = (f"source {named}: {exc}",)
            raise

    # --- tokens -------------------------------------------------------------------------------

    def _token_call(self, api_path: str, params: dict[str, str]) -> TokenPair:
        body = orjson.loads(self._post(REST_PREFIX + api_path, self._signed(params, api_path)).content)
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        return TokenPair(
            access_token=body["access_token"],
            access_expires_at=_expiry(now, body.get("expires_in"), body.get("expire_time")) or now + FALLBACK_TOKEN_LIFE,
            refresh_token=body.get("refresh_token"),
            refresh_expires_at=_expiry(now, body.get("refresh_expires_in"), body.get("refresh_token_valid_time")),
            obtained_at=now,
            extra={k: str(body[k]) for k in ("user_id", "seller_id", "account") if body.get(k) not in (None, "")},
        )

    def _renew(self, current: TokenPair | None) -> TokenPair:
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        usable = current is not None and current.refresh_token and (
            current.refresh_expires_at is None or current.refresh_expires_at > now)
        if usable:
            try:
                return self._token_call(TOKEN_REFRESH_PATH, {"refresh_token": current.refresh_token})
            except RefreshRefused:
                self.ctx.log.warning("refresh_token_refused", next="a new token from credentials.auth_code")
        try:
            code = self.ctx.secret("auth_code")
        except ConfigError:
            why = "the stored refresh token was refused" if usable else "no usable stored AliExpress token"
            raise AuthError(f"source {self.label}: {why} and no credentials.auth_code; {REAUTHORIZE}") from None
        return self._token_call(TOKEN_CREATE_PATH, {"code": code})

    def session(self, *, force: bool = False) -> str:
        """A valid access token, renewed (and persisted) first when it is close to expiry or ``force``."""
        if self._pair is None or force or self._pair.expires_within(TOKEN_AHEAD):
            self._pair = self.ctx.tokens.valid(PROVIDER, self.ctx.account_id, self._renew, ahead=TOKEN_AHEAD,
                                               force=force, stale=self._pair if force else None)
        return self._pair.access_token

    # --- business APIs ------------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any]) -> Reply:
        """Call a business API; refresh the token once if the gateway refuses it.

        :raises NotFoundError: ``result.ret`` is false with "not found" (code ``1001``).
        :raises TerminalError: ``result.ret`` is false for another reason.
        """
        for attempt in (1, 2):
            form = self._signed({"method": method, "session": self.session(force=attempt == 2), **params})
            try:
                response = self._post(SYNC_PATH, form)
                break
            except SessionRejected:
                if attempt == 2:
                    raise
                self.ctx.log.info("session_rejected", api=method)
        body = orjson.loads(response.content)
        result = (body.get(method.replace(".", "_") + "_response") or {}).get("result")
        if not isinstance(result, dict):
            raise TerminalError(f"source {self.label}: {method} replied without a result object")
        if not _ret_ok(result):
            code, msg = str(result.get("code") or ""), str(result.get("msg") or "")
            what = f"source {self.label}: {method} {dict(params)}: {code} {msg}".strip()
            if code in NOT_FOUND_CODES or any(w in msg.upper() for w in NOT_FOUND_WORDS):
                raise NotFoundError(what)
            raise TerminalError(what)
        return Reply(response.content, result)

    def order(self, order_id: str) -> Reply:
        return self.call(ORDER_GET, {"single_order_query": orjson.dumps({"order_id": int(order_id)}).decode()})

    def tracking(self, order_id: str) -> Reply:
        return self.call(TRACKING_GET, {"ae_order_id": order_id, "language": self.language})


def _expiry(now: datetime, seconds_left: Any, epoch_ms: Any) -> datetime | None:
    """Expiry from the reply: ``now + expires_in`` when given, else the absolute ``expire_time`` (epoch ms)."""
    if seconds_left not in (None, "", 0, "0"):
        return now + timedelta(seconds=float(seconds_left))
    if epoch_ms not in (None, "", 0, "0"):
        return datetime.fromtimestamp(float(epoch_ms) / 1000, timezone.utc)
    return None
