"""A Shopee shop's token pair: first obtained from an authorization code, then refreshed, never lost.

The refresh token is single-use (providers.md 1.3): each refresh returns a new pair and spends the old
refresh token. So every renewal goes through :meth:`shipetl.tokens.TokenStore.valid`, which locks the
shop against other threads and processes, re-reads the stored pair, calls Shopee, and writes the new
pair (temp file, fsync, rename, mode 0600) before anyone may use it. The access token (4 h) is renewed
when less than ``ahead`` is left, and once more when Shopee refuses it anyway (``force``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from shipetl import AuthError, TerminalError, TokenPair, TokenStore, TransientError

from .client import CredentialRefused, NotShopee, StaleTimestamp

if TYPE_CHECKING:
    from .client import ShopeeApi

PROVIDER = "shopee"
ACCESS_RENEW_AHEAD = timedelta(minutes=10)
REFRESH_TOKEN_LIFE = timedelta(days=30)
REFRESH_TOKEN_WARN_AGE = timedelta(days=25)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def pair_from_reply(reply: dict[str, Any], shop_id: int, received_at: datetime) -> TokenPair:
    """The pair in a flat token reply; ``expire_in`` is the life left when the reply was made (6.2)."""
    if not reply.get("access_token") or not reply.get("refresh_token"):
        raise TerminalError(f"shop {shop_id}: token reply without access_token/refresh_token "
                            f"(request_id {reply.get('request_id')})")
    return TokenPair(
        access_token=reply["access_token"],
        access_expires_at=received_at + timedelta(seconds=int(reply.get("expire_in") or 0)),
        refresh_token=reply["refresh_token"],
        refresh_expires_at=received_at + REFRESH_TOKEN_LIFE,
        obtained_at=received_at,
        extra={"shop_id": int(shop_id)},
    )


def _shopee_said(exc: Exception) -> str:
    """The envelope part of a classified error's message (``error_param "..." (request_id ...)``)."""
    return str(exc).rsplit(": ", 1)[-1]


def code_for_shop(auth_code: str | None, shop_id: int) -> str | None:
    """The authorization code meant for ``shop_id``: ``auth_code`` is one code for every shop, or
    ``shop_id:code`` pairs joined by commas."""
    if not auth_code:
        return None
    if ":" not in auth_code:
        return auth_code.strip()
    for part in auth_code.split(","):
        shop, _, code = part.partition(":")
        if shop.strip() == str(shop_id):
            return code.strip()
    return None


class ShopTokens:
    """Keeps one shop's access token valid for the calls of one run (thread-safe through the store's lock)."""

    def __init__(self, store: TokenStore, api: ShopeeApi, *, relink: str, account: str, shop_id: int,
                 auth_code: str | None = None, log: Any = None, ahead: timedelta = ACCESS_RENEW_AHEAD) -> None:
        """``relink`` is the command that links the shop again (``ExtractContext.auth_command``), for errors."""
        self.store, self.api, self.relink = store, api, relink
        self.account, self.shop_id = account, int(shop_id)
        self.auth_code = code_for_shop(auth_code, shop_id)
        self.log, self.ahead = log, ahead
        self._pair: TokenPair | None = None

    def current(self) -> TokenPair:
        """A pair good for at least ``ahead``; renewed and persisted first when it is not."""
        pair = self._pair
        if pair is None or pair.expires_within(self.ahead, self.store.clock()):
            pair = self._pair = self.store.valid(PROVIDER, self.account, self._renew, ahead=self.ahead)
        return pair

    def after_rejection(self, stale: TokenPair) -> TokenPair:
        """Shopee refused ``stale``: renew once, unless another thread or process already did."""
        self._pair = self.store.valid(PROVIDER, self.account, self._renew, ahead=self.ahead, force=True, stale=stale)
        return self._pair

    def link(self, code: str) -> TokenPair:
        """Store the first pair of the shop from the code of the authorization redirect."""
        with self.store.locked(PROVIDER, self.account):
            pair = self._exchange(code)
            self.store.save(PROVIDER, self.account, pair)
        self._pair = pair
        return pair

    def _relink_hint(self) -> str:
        return f"link the shop again: {self.relink}"

    def _renew(self, current: TokenPair | None) -> TokenPair:
        now = self.store.clock()
        if current is not None and current.refresh_token and (
                current.refresh_expires_at is None or current.refresh_expires_at > now):
            if self.log is not None and now - current.obtained_at > REFRESH_TOKEN_WARN_AGE:
                self.log.warning("refresh_token_ageing", shop_id=self.shop_id,
                                 obtained_at=current.obtained_at.isoformat())
            try:
                reply = self.api.token_from_refresh(current.refresh_token, self.shop_id)
            except (TransientError, CredentialRefused, StaleTimestamp, NotShopee):
                raise
            except TerminalError as exc:
                raise AuthError(f"shop {self.shop_id}: Shopee refused its refresh token; {self._relink_hint()} "
                                f"(Shopee said: {_shopee_said(exc)})") from None
            return pair_from_reply(reply, self.shop_id, self.store.clock())
        if self.auth_code:
            return self._exchange(self.auth_code)
        why = "is not linked yet" if current is None else "has an expired refresh token (30 days)"
        raise AuthError(f"shop {self.shop_id} {why}; run: {self.relink}")

    def _exchange(self, code: str) -> TokenPair:
        try:
            reply = self.api.token_from_code(code, self.shop_id)
        except (TransientError, CredentialRefused, StaleTimestamp, NotShopee):
            raise
        except TerminalError as exc:
            raise AuthError(f"shop {self.shop_id}: Shopee refused the authorization code (single-use, valid 10 "
                            f"minutes); {self._relink_hint()} (Shopee said: {_shopee_said(exc)})") from None
        return pair_from_reply(reply, self.shop_id, self.store.clock())
