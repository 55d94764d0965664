"""OAuth-style token pairs per provider account, persisted atomically and refreshed under a lock.

Some providers (Shopee, AliExpress) hand out single-use refresh tokens: a refresh answered but not
written down burns the only valid token and the seller must authorize again. So :meth:`TokenStore.refresh`
takes an inter-process lock, re-reads the file (another run may have refreshed meanwhile), calls the
provider, and writes the new pair (temp file, fsync, rename, mode 0600) before anyone may use it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, WarehouseBusyError
from .log import get_logger
from .rawzone import safe_name
from .redact import register_secret

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class TokenPair:
    """An access token with its expiry, and the refresh token that renews it (if the provider has one)."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None
    obtained_at: datetime = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def expires_within(self, margin: timedelta, now: datetime | None = None) -> bool:
        """True when the access token is expired or will be within ``margin``."""
        return self.access_expires_at - margin <= (now or _now())

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> TokenPair:
        raw = orjson.loads(data)
        for key in ("access_expires_at", "refresh_expires_at", "obtained_at"):
            if raw.get(key):
                raw[key] = datetime.fromisoformat(raw[key])
        return cls(**raw)


class TokenStore:
    """One JSON file per provider account under ``directory`` (mode 0600), with a lock file beside it."""

    def __init__(self, directory: Path, clock: Callable[[], datetime] = _now):
        self.directory = Path(directory)
        self.clock = clock

    def _path(self, provider: str, account: str) -> Path:
        return self.directory / f"{safe_name(provider)}--{safe_name(account)}.json"

    def load(self, provider: str, account: str) -> TokenPair | None:
        """The stored pair, or None if this account was never authorized."""
        path = self._path(provider, account)
        try:
            pair = TokenPair.from_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:  # cut short or edited by hand
            raise ConfigError(f"{path}: unreadable token file ({type(exc).__name__}); delete it and run again "
                              f"(an account a person links, as a Shopee shop, then asks for `shipetl auth`)") from None
        register_secret(pair.access_token)
        register_secret(pair.refresh_token)
        return pair

    def save(self, provider: str, account: str, pair: TokenPair) -> None:
        """Write the pair atomically: temp file in the same folder, fsync, rename, fsync the folder."""
        register_secret(pair.access_token)
        register_secret(pair.refresh_token)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(provider, account)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=path.name, suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pair.to_json())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def locked(self, provider: str, account: str, timeout: float = 120.0) -> Iterator[None]:
        """Hold the account's lock against other threads and other processes (``flock``)."""
        key = f"{provider}/{account}"
        with _THREAD_LOCKS_GUARD:
            thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
        if not thread_lock.acquire(timeout=timeout):
            raise WarehouseBusyError(f"token lock for {key} not released within {timeout:.0f} s")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self._path(provider, account).with_suffix(".lock"), "a") as fh:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise WarehouseBusyError(f"another process holds the token lock for {key}") from None
                        time.sleep(0.1)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            thread_lock.release()

    def valid(self, provider: str, account: str, renew: Callable[[TokenPair | None], TokenPair], *,
              ahead: timedelta = timedelta(minutes=10), force: bool = False, stale: TokenPair | None = None) -> TokenPair:
        """A pair whose access token is good for at least ``ahead``; renews (and persists) it if not.

        ``renew(current)`` calls the provider and returns the new pair; it runs under the lock, after a
        re-read, so two runs never spend one refresh token. ``force=True`` renews even an unexpired
        token (after the provider rejected it) unless another process already replaced ``stale``.
        :raises AuthError: when there is nothing to renew from and ``renew`` cannot create a pair.
        """
        with self.locked(provider, account):
            current = self.load(provider, account)
            replaced = stale is not None and current is not None and current.access_token != stale.access_token
            if current is not None and not current.expires_within(ahead, self.clock()) and (not force or replaced):
                return current
            new = renew(current)
            self.save(provider, account, new)
            get_logger().info("token_refreshed", provider=provider, account=account,
                              expires_at=new.access_expires_at.isoformat())
            return new
