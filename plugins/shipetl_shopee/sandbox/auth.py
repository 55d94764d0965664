"""How the Shopee sandbox checks a call as Shopee does: partner, timestamp window, signature, tokens.

Tokens are self-verifying (an HMAC over shop, kind, issue time and a nonce, keyed by the seed), so a
sandbox started again with the same seed still accepts the pairs an earlier one issued: ``make demo``
can run twice against two sandbox processes with one token file. What must be remembered (refresh
tokens spent, access tokens superseded by a refresh, revoked shops) lives in memory.

Token clock: wall time plus an offset tests move (``POST /shopee/_clock``) and an optional step per
shop call, so a 4-hour access token can expire in the middle of a run. The request ``timestamp`` is
checked against real wall time, as Shopee checks it against its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

# Shopee's side of the signature, written independently of the plugin's signer so each checks the other.
PUBLIC_PREFIXES = ("/api/v2/public/", "/api/v2/auth/", "/api/v2/shop/auth_partner")


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


def expected_sign(partner_key: str, *parts: object) -> str:
    """Lowercase hex HMAC-SHA256 over the plain concatenation of ``parts``."""
    message = "".join(str(p) for p in parts).encode()
    return hmac.new(partner_key.encode(), message, hashlib.sha256).hexdigest()

PARTNER_ID = 2001887
PARTNER_KEY = "shipetl-sandbox-partner-key"
TEST_AUTH_CODE = "shipetl-sandbox-auth-code"
"""Documented test authorization code: exchanges once per shop per sandbox process (like a fresh link)."""
TIMESTAMP_WINDOW_S = 300
ACCESS_LIFE_S = 4 * 3600
REFRESH_LIFE_S = 30 * 86400
GRACE_AFTER_REFRESH_S = 300
CODE_LIFE_S = 600


class ShopeeError(Exception):
    """An error reply in Shopee's envelope."""

    def __init__(self, error: str, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.error, self.message, self.status = error, message, status


@dataclass(frozen=True)
class Token:
    kind: str  # "a" access, "r" refresh
    shop_id: int
    issued: int  # token clock, epoch seconds
    nonce: str


@dataclass
class Auth:
    """Partner credentials, the token clock and what the sandbox remembers of tokens and codes."""

    seed: int
    partner_id: int = PARTNER_ID
    partner_key: str = PARTNER_KEY
    shops: frozenset[int] = frozenset()
    offset_s: float = 0.0
    step_s: float = 0.0
    spent_refresh: set[str] = field(default_factory=set)
    superseded: dict[str, float] = field(default_factory=dict)  # access nonce -> last valid instant
    revoked: dict[int, float] = field(default_factory=dict)  # shop -> tokens issued before are dead
    codes: dict[str, tuple[int, float]] = field(default_factory=dict)  # code -> (shop, expires)
    test_code_used: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        """The token clock."""
        return time.time() + self.offset_s

    def tick(self) -> None:
        """One shop call happened: move the token clock by ``step_s``."""
        with self.lock:
            self.offset_s += self.step_s

    # --- tokens ------------------------------------------------------------------------------------

    def _mac(self, body: str) -> str:
        key = hashlib.sha256(f"shopee-sandbox-{self.seed}".encode()).digest()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def mint(self, kind: str, shop_id: int, nonce: str) -> str:
        body = f"{kind}.{shop_id}.{int(self.now())}.{nonce}"
        return body.encode().hex() + self._mac(body)

    def read(self, token: str | None, kind: str) -> Token | None:
        """The token's claims if it is well formed, signed by this seed and of ``kind``; else None."""
        if not token or len(token) <= 32:
            return None
        try:
            body = bytes.fromhex(token[:-32]).decode()
            k, shop, issued, nonce = body.split(".")
            claims = Token(k, int(shop), int(issued), nonce)
        except ValueError:
            return None
        if k != kind or not hmac.compare_digest(self._mac(body), token[-32:]):
            return None
        return claims

    def issue_pair(self, shop_id: int) -> dict[str, object]:
        nonce = secrets.token_hex(6)
        return {"access_token": self.mint("a", shop_id, nonce), "refresh_token": self.mint("r", shop_id, nonce),
                "expire_in": ACCESS_LIFE_S}

    def access_ok(self, token: str | None, shop_id: int) -> bool:
        claims = self.read(token, "a")
        now = self.now()
        if claims is None or claims.shop_id != shop_id or now >= claims.issued + ACCESS_LIFE_S:
            return False
        if claims.issued < self.revoked.get(shop_id, float("-inf")):
            return False
        deadline = self.superseded.get(claims.nonce)
        return deadline is None or now < deadline

    def refresh(self, token: str, shop_id: int) -> dict[str, object]:
        """A new pair for a refresh token; the old one is spent, its access token lives 5 more minutes."""
        with self.lock:
            claims = self.read(token, "r")
            now = self.now()
            if (claims is None or claims.shop_id != shop_id or claims.nonce in self.spent_refresh
                    or now >= claims.issued + REFRESH_LIFE_S
                    or claims.issued < self.revoked.get(shop_id, float("-inf"))):
                raise ShopeeError("error_param", "Invalid refresh_token.", 403)
            self.spent_refresh.add(claims.nonce)
            self.superseded[claims.nonce] = now + GRACE_AFTER_REFRESH_S
            return self.issue_pair(shop_id)

    def new_code(self, shop_id: int) -> str:
        code = secrets.token_hex(16)
        with self.lock:
            self.codes[code] = (shop_id, time.time() + CODE_LIFE_S)
        return code

    def exchange(self, code: str, shop_id: int) -> dict[str, object]:
        """The first pair of a shop; a code works once (the documented test code once per shop)."""
        with self.lock:
            if code == TEST_AUTH_CODE and shop_id in self.shops and shop_id not in self.test_code_used:
                self.test_code_used.add(shop_id)
            else:
                shop, expires = self.codes.pop(code, (None, 0.0))
                if shop != shop_id or time.time() >= expires:
                    raise ShopeeError("error_param", "Invalid code.", 403)
            self.revoked.pop(shop_id, None)
            return self.issue_pair(shop_id)

    def revoke(self, shop_id: int) -> None:
        with self.lock:
            self.revoked[shop_id] = self.now() + 1

    # --- the checks every call goes through (seed 000's error table) --------------------------------

    def check(self, path: str, query) -> int | None:
        """Check partner, timestamp, sign and (shop calls) token; return the shop id of a shop call."""
        partner = query.get("partner_id")
        if not partner:
            raise ShopeeError("error_param", "There is no partner_id in query.", 400)
        if partner != str(self.partner_id):
            raise ShopeeError("error_param", "Invalid partner_id.", 400)
        stamp = query.get("timestamp")
        if not stamp:
            raise ShopeeError("error_param", "no timestamp", 400)
        try:
            skew = time.time() - int(stamp)
        except ValueError:
            raise ShopeeError("error_param", "Invalid timestamp", 400) from None
        if abs(skew) > TIMESTAMP_WINDOW_S:
            raise ShopeeError("error_param", "Invalid timestamp", 400)
        given = query.get("sign")
        if not given:
            raise ShopeeError("error_param", "There is no sign in query.", 400)
        token = query.get("access_token")
        shop_id = query.get("shop_id")
        merchant_id = query.get("merchant_id")
        if is_public(path):
            parts: tuple[object, ...] = (self.partner_id, path, int(stamp))
        else:
            if not token:
                raise ShopeeError("error_param", "There is no access_token in query.", 400)
            if not (shop_id or merchant_id):
                raise ShopeeError("error_param", "Wrong parameters, detail: shop_id is required.", 400)
            # Shop form with shop_id; merchant form (cross-border merchant APIs) with merchant_id.
            parts = (self.partner_id, path, int(stamp), token, merchant_id or shop_id)
        if not hmac.compare_digest(expected_sign(self.partner_key, *parts), given):
            raise ShopeeError("error_sign", "Wrong sign.", 403)
        if is_public(path):
            return None
        if not (shop_id or "").isdigit() or int(shop_id) not in self.shops:
            raise ShopeeError("common.invalid_shop", "Shop id is invalid. Please check your shop.", 403)
        if not self.access_ok(token, int(shop_id)):
            raise ShopeeError("error_auth", "Invalid access_token.", 403)
        return int(shop_id)
