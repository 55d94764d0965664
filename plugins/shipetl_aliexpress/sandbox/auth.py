"""How the AliExpress sandbox checks a call as the gateway does: app key, timestamp, HMAC sign, tokens.

Sandbox credentials (they work only here):

    app_key     34517862   (options.app_key)
    app_secret  sandbox-aliexpress-app-secret
    auth_code   sandbox-auth-code   (every ``/auth/token/create`` with it issues a fresh pair)

``Gateway`` also counts calls and throttles. The sign check here is written apart from the plugin's signer
on purpose: a verifier that shared its code could not catch its bugs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import Counter
from typing import Any

APP_KEY = "34517862"
APP_SECRET = "sandbox-aliexpress-app-secret"
AUTH_CODE = "sandbox-auth-code"
ACCESS_TTL_S = 86_400  # a test-app sample (providers.md 2.3)
REFRESH_TTL_S = 172_800
MAX_SKEW_S = 600  # older TOP docs; the current doc allows 7200 s


def expected_sign(params: dict[str, str], api_path: str = "") -> str:
    """What the gateway computes: HMAC-SHA256(app secret, path + sorted key+value), uppercase hex."""
    text = api_path + "".join(k + params[k] for k in sorted(params) if k != "sign")
    return hmac.new(APP_SECRET.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


def _request_id() -> str:
    return secrets.token_hex(12)


class Gateway:
    """Tokens issued, calls counted, throttling: the mutable part of the sandbox."""

    def __init__(self, throttle_every: int = 0) -> None:
        self.lock = threading.Lock()
        self.throttle_every = throttle_every
        self.throttle_seconds = 1
        self.access: dict[str, float] = {}  # access token -> expiry (epoch s)
        self.refresh: dict[str, float] = {}  # unused refresh token -> expiry; spent ones are removed
        self.calls = 0
        self.stats: Counter[str] = Counter()

    def reset(self) -> None:
        with self.lock:
            self.calls = 0
            self.stats.clear()

    def refused(self, params: dict[str, str], api_path: str) -> str | None:
        """The gateway error code for a badly authenticated request, or None when it passes."""
        if params.get("app_key") != APP_KEY:
            return "InvalidAppKey"
        if params.get("sign_method") != "sha256":
            return "IncompleteSignature"
        try:
            sent = int(params.get("timestamp", "")) / 1000
        except ValueError:
            return "InvalidTimestamp"
        if abs(time.time() - sent) > MAX_SKEW_S:
            return "InvalidTimestamp"
        if not hmac.compare_digest(params.get("sign", ""), expected_sign(params, api_path)):
            return "IncompleteSignature"
        return None

    def issue(self) -> dict[str, Any]:
        now = time.time()
        access, refresh = "ae-at-" + secrets.token_hex(16), "ae-rt-" + secrets.token_hex(16)
        with self.lock:
            self.access[access] = now + ACCESS_TTL_S
            self.refresh[refresh] = now + REFRESH_TTL_S
        return {"code": "0", "access_token": access, "refresh_token": refresh, "expires_in": ACCESS_TTL_S,
                "refresh_expires_in": REFRESH_TTL_S, "expire_time": int((now + ACCESS_TTL_S) * 1000),
                "refresh_token_valid_time": int((now + REFRESH_TTL_S) * 1000), "user_id": "2000100200",
                "seller_id": "2000100200", "request_id": _request_id()}

    def spend_refresh(self, token: str) -> bool:
        """Refresh tokens are single-use here (providers.md 2.3 applies the Shopee recipe)."""
        with self.lock:
            expiry = self.refresh.pop(token, None)
        return expiry is not None and expiry > time.time()

    def session_ok(self, token: str | None) -> bool:
        with self.lock:
            expiry = self.access.get(token or "")
        return expiry is not None and expiry > time.time()

    def throttled(self) -> bool:
        with self.lock:
            self.calls += 1
            hit = self.throttle_every > 0 and self.calls % self.throttle_every == 0
            if hit:
                self.stats["throttled"] += 1
            return hit
