"""Shopee Open Platform v2 on shipetl's HTTP client: request signing, endpoints, the error envelope.

Every call is signed (providers.md 1.2): ``sign`` = lowercase hex HMAC-SHA256, keyed with the literal
``partner_key``, of ``partner_id + api_path + timestamp`` for public calls and of
``partner_id + api_path + timestamp + access_token + shop_id`` for shop calls; the signature and its
inputs travel in the query string. Replies share one envelope (``error``, ``message``, ``request_id``,
``response``) whatever the HTTP status; :func:`classify` turns a non-empty ``error`` into a typed error.
Token lifecycle lives in ``tokens.py``; what to fetch and when in ``extract.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from shipetl import (AuthError, HttpClient, NotFoundError, SkipRecord, TerminalError, TransientError, not_the_api,
                     register_secret)

if TYPE_CHECKING:
    from .tokens import ShopTokens

# --- Provider facts (providers.md 1.1, 1.4) ---------------------------------------------------------
LIVE_BASE_URL = "https://partner.shopeemobile.com"
ORDER_LIST_PATH = "/api/v2/order/get_order_list"
ORDER_DETAIL_PATH = "/api/v2/order/get_order_detail"
TRACKING_NUMBER_PATH = "/api/v2/logistics/get_tracking_number"
TRACKING_INFO_PATH = "/api/v2/logistics/get_tracking_info"
TOKEN_GET_PATH = "/api/v2/auth/token/get"
TOKEN_REFRESH_PATH = "/api/v2/auth/access_token/get"
AUTH_PARTNER_PATH = "/api/v2/shop/auth_partner"
PUBLIC_PREFIXES = ("/api/v2/public/", "/api/v2/auth/", AUTH_PARTNER_PATH)

MAX_WINDOW_S = 1_296_000  # get_order_list: time_to - time_from, 15 days
# The slices asked for: a little under that, since whether Shopee counts both bounds is unconfirmed (providers.md 1.4).
WINDOW_S = MAX_WINDOW_S - 3600
PAGE_SIZE_MAX = 100
DETAIL_BATCH_MAX = 50
# get_order_detail returns only a few fields unless asked; these feed orders, order_items and shipments.
DETAIL_OPTIONAL_FIELDS = (
    "buyer_user_id", "buyer_username", "estimated_shipping_fee", "recipient_address", "actual_shipping_fee",
    "actual_shipping_fee_confirmed", "note", "note_update_time", "item_list", "pay_time", "dropshipper",
    "dropshipper_phone", "split_up", "buyer_cancel_reason", "cancel_by", "cancel_reason", "fulfillment_flag",
    "pickup_done_time", "package_list", "shipping_carrier", "checkout_shipping_carrier", "payment_method",
    "total_amount", "order_chargeable_weight_gram",
)

# --- Error names (providers.md 1.5); matched exactly first, then by the part after the last dot -------
TRANSIENT_ERRORS = frozenset({"error_server", "error_network", "error_rate_limit", "error_busy"})
NOT_FOUND_ERRORS = frozenset({"error_not_found", "logistics.invalid_error", "logistics.package_not_exist"})
NEEDS_PACKAGE_ERRORS = frozenset({"logistics.package_number_not_exist"})
NOT_YET_ERRORS = frozenset({"logistics.error_param"})
DAILY_QUOTA_ERROR = "error_limit"


class AccessTokenRejected(AuthError):
    """``error_auth`` "Invalid access_token": refresh the pair once and try again."""


class CredentialRefused(AuthError):
    """The app's own credentials are wrong (sign, partner_id, shop id): no token can help."""


class StaleTimestamp(AuthError):
    """``error_param`` about the timestamp: sign again once, then blame the clock."""


class NeedsPackageNumber(TerminalError):
    """``logistics.package_number_not_exist``: a split order; ask again per ``package_number``."""


class NotYetAvailable(SkipRecord):
    """The carrier is still being allocated (``logistics.error_param``): ask again next run."""


class NotShopee(TerminalError):
    """An HTTP 404 without Shopee's envelope, or a success without any of it: the request reached something else
    (a wrong ``base_url``)."""


class DailyQuotaExceeded(TerminalError):
    """``error_limit``: the app's daily quota is spent (resets 00:00 UTC+8); keep what is committed."""


def base_string(partner_id: int, path: str, timestamp: int, access_token: str | None = None,
                shop_id: int | None = None) -> str:
    """The text Shopee signs: public form without token and shop, shop form with both."""
    text = f"{partner_id}{path}{timestamp}"
    if access_token is not None:
        text += f"{access_token}{shop_id}"
    return text


def sign(partner_key: str, base: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``base``, keyed with ``partner_key`` as UTF-8 text (not hex-decoded)."""
    return hmac.new(partner_key.encode(), base.encode(), hashlib.sha256).hexdigest()


def is_public(path: str) -> bool:
    """Calls signed without access token and shop id (auth, public and the authorization link)."""
    return path.startswith(PUBLIC_PREFIXES)


@dataclass(frozen=True)
class Envelope:
    """The error part of a Shopee reply."""

    error: str
    message: str
    request_id: str

    @property
    def short(self) -> str:
        """The error name without its module prefix (``common.error_auth`` -> ``error_auth``)."""
        return self.error.rsplit(".", 1)[-1]


def envelope_of(response: httpx.Response) -> Envelope | None:
    """The envelope of a reply that carries a non-empty ``error``, on any HTTP status; else None."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not body.get("error"):
        return None
    return Envelope(str(body["error"]), str(body.get("message") or ""), str(body.get("request_id") or ""))


def classify(response: httpx.Response, shop: str = "partner") -> None:
    """Raise the typed error a Shopee envelope stands for; the message names the endpoint and the shop. A reply
    with no envelope at all (a 404, or a success without ``request_id`` or ``response``) is ``NotShopee``.

    :param shop: ``shop 12345`` (or ``partner`` for public calls), put in every message.
    """
    env = envelope_of(response)
    if env is None:
        if response.status_code == 404:
            raise NotShopee(str(not_the_api(response, "Shopee")))
        if response.status_code < 400 and b'"request_id"' not in response.content and b'"response"' not in response.content:
            raise NotShopee(str(not_the_api(response, "Shopee", "Shopee's envelope (request_id, response)")))
        return
    where = f"{shop}: {response.request.url.path}"
    said = f"{env.error} \"{env.message}\" (request_id {env.request_id})"
    name, short, lowered = env.error, env.short, env.message.lower()
    if name in NEEDS_PACKAGE_ERRORS:
        raise NeedsPackageNumber(f"{where}: split order needs package_number: {said}")
    if name in NOT_YET_ERRORS:
        raise NotYetAvailable(f"{where}: not ready yet, asked again next run: {said}")
    if name in NOT_FOUND_ERRORS or short == "error_not_found":
        raise NotFoundError(f"{where}: not found: {said}")
    if short in TRANSIENT_ERRORS:
        raise TransientError(f"{where}: Shopee asked to slow down or failed: {said}")
    if short == DAILY_QUOTA_ERROR:
        raise DailyQuotaExceeded(f"{where}: the app's daily API quota is spent (resets 00:00 UTC+8): {said}")
    if name == "common.invalid_shop":
        raise CredentialRefused(f"{where}: Shopee does not know this shop id; check options.shop_ids: {said}")
    if short == "error_auth" and "access_token" in lowered and "invalid" in lowered:
        raise AccessTokenRejected(f"{where}: access token refused: {said}")
    if short in ("error_auth", "error_permission"):
        raise AuthError(f"{where}: permission refused; the app lacks this API or the shop revoked it: {said}")
    if short == "error_sign":
        raise CredentialRefused(f"{where}: wrong sign: Shopee rejected the signature; check credentials.partner_key "
                        f"(test and live keys differ) and options.partner_id: {said}")
    if short == "error_param" and "timestamp" in lowered:
        raise StaleTimestamp(f"{where}: timestamp refused: this machine's clock is probably off by more than "
                             f"5 minutes (clock skew); sync it (NTP): {said}")
    if short == "error_param" and "partner_id" in lowered:
        raise CredentialRefused(f"{where}: partner_id refused: check options.partner_id: {said}")
    raise TerminalError(f"{where}: request rejected (bad parameters; a bug, not retried): {said}")


class ShopeeApi:
    """Signed calls for one partner and, for shop calls, one shop whose token pair ``tokens`` keeps fresh.

    ``clock`` gives Unix seconds for the ``timestamp`` (tests pass a fixed one).
    """

    def __init__(self, http_for: Callable[[Callable[[httpx.Response], None]], HttpClient], partner_id: int,
                 partner_key: str, shop_id: int | None = None, tokens: ShopTokens | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.partner_id = int(partner_id)
        self.partner_key = partner_key
        self.shop_id = shop_id
        self.tokens = tokens
        self.clock = clock
        self.http = http_for(partial(classify, shop=f"shop {shop_id}" if shop_id else "partner"))

    def close(self) -> None:
        self.http.close()

    def signed_query(self, path: str, access_token: str | None = None) -> dict[str, Any]:
        """partner_id, timestamp and sign (+ access_token and shop_id for shop calls), signed now."""
        timestamp = int(self.clock())
        query: dict[str, Any] = {"partner_id": self.partner_id, "timestamp": timestamp}
        if is_public(path):
            query["sign"] = sign(self.partner_key, base_string(self.partner_id, path, timestamp))
        else:
            query.update(access_token=access_token, shop_id=self.shop_id,
                         sign=sign(self.partner_key, base_string(self.partner_id, path, timestamp, access_token,
                                                                 self.shop_id)))
        return query

    def call(self, path: str, params: Mapping[str, Any] | None = None, *, json: Any = None) -> tuple[bytes, dict]:
        """One signed call (GET, or POST when ``json`` is given): the reply's bytes and its decoded JSON.

        A refused access token is refreshed once and a refused timestamp re-signed once, then the
        error goes up with what the user must do.
        """
        refreshed = resigned = False
        while True:
            pair = None if is_public(path) else self.tokens.current()
            query = {**(params or {}), **self.signed_query(path, pair.access_token if pair else None)}
            try:
                if json is None:
                    response = self.http.request("GET", path, params=query)
                else:
                    response = self.http.request("POST", path, params=query, json=json)
                return response.content, orjson.loads(response.content)
            except AccessTokenRejected as exc:
                if pair is None:
                    raise
                if refreshed:
                    raise AuthError(f"{exc}; refreshing did not help: link the shop again with "
                                    f"`{self.tokens.relink}`", source=exc.source) from None
                self.tokens.after_rejection(pair)
                refreshed = True
            except StaleTimestamp:
                if resigned:
                    raise
                resigned = True

    # --- shop endpoints (providers.md 1.4) ------------------------------------------------------------

    def order_list_pages(self, time_from: int, time_to: int, page_size: int = PAGE_SIZE_MAX):
        """Every page of ``get_order_list`` by ``update_time`` in one window (at most 15 days), following the cursor."""
        if time_to - time_from > MAX_WINDOW_S:
            raise ValueError(f"get_order_list window of {time_to - time_from} s exceeds {MAX_WINDOW_S} s")
        cursor = ""
        while True:
            raw, body = self.call(ORDER_LIST_PATH, {
                "time_range_field": "update_time", "time_from": time_from, "time_to": time_to,
                "page_size": min(page_size, PAGE_SIZE_MAX), "cursor": cursor,
                "response_optional_fields": "order_status",
                "request_order_status_pending": "true",  # else PENDING orders stay hidden (providers.md 1.4)
            })
            yield raw, body
            response = body.get("response") or {}
            cursor = response.get("next_cursor") or ""
            if not response.get("more") or not cursor:
                return

    def order_detail(self, order_sns: Sequence[str]) -> tuple[bytes, dict]:
        """``get_order_detail`` for at most 50 order numbers, with every optional field the mapping reads."""
        if not 1 <= len(order_sns) <= DETAIL_BATCH_MAX:
            raise ValueError(f"get_order_detail takes 1..{DETAIL_BATCH_MAX} order numbers, got {len(order_sns)}")
        return self.call(ORDER_DETAIL_PATH, {"order_sn_list": ",".join(order_sns),
                                             "response_optional_fields": ",".join(DETAIL_OPTIONAL_FIELDS)})

    def tracking_number(self, order_sn: str, package_number: str | None, split: bool) -> dict[str, Any]:
        """``get_tracking_number``'s ``response``; a single-package order is asked without package_number
        (as the docs do), and again with it if Shopee says the order is split."""
        params = {"order_sn": order_sn}
        if package_number and split:
            params["package_number"] = package_number
        try:
            return self.call(TRACKING_NUMBER_PATH, params)[1].get("response") or {}
        except NeedsPackageNumber:
            if not package_number or "package_number" in params:
                raise
            return self.call(TRACKING_NUMBER_PATH, {**params, "package_number": package_number})[1].get("response") or {}

    def tracking_info(self, order_sn: str, package_number: str | None) -> bytes:
        """``get_tracking_info`` of one package, as the reply's bytes."""
        params = {"order_sn": order_sn}
        if package_number:
            params["package_number"] = package_number
        return self.call(TRACKING_INFO_PATH, params)[0]

    # --- public endpoints (providers.md 1.3) ----------------------------------------------------------

    def authorization_link(self, base_url: str, redirect: str) -> str:
        """The link a seller opens to authorize this app for a shop (valid 5 minutes)."""
        query = {**self.signed_query(AUTH_PARTNER_PATH), "redirect": redirect}
        return str(httpx.URL(base_url.rstrip("/") + AUTH_PARTNER_PATH, params=query))

    def token_from_code(self, code: str, shop_id: int) -> dict[str, Any]:
        """``POST /auth/token/get``: the first pair of a shop, from the single-use code of the redirect."""
        register_secret(code)  # one of several per-shop codes, or pasted into `shipetl auth`: masked all the same
        return self.call(TOKEN_GET_PATH, json={"code": code, "partner_id": self.partner_id,
                                               "shop_id": int(shop_id)})[1]

    def token_from_refresh(self, refresh_token: str, shop_id: int) -> dict[str, Any]:
        """``POST /auth/access_token/get``: a new pair; the refresh token given is spent from now on."""
        return self.call(TOKEN_REFRESH_PATH, json={"refresh_token": refresh_token, "partner_id": self.partner_id,
                                                   "shop_id": int(shop_id)})[1]
