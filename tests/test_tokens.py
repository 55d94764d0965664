"""Token pairs: atomic 0600 files, renewal under a lock, and one renewal however many processes ask."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shipetl import redact
from shipetl.errors import AuthError
from shipetl.tokens import TokenPair, TokenStore

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def pair(access: str, expires_in: timedelta, refresh: str | None = "rt-0001") -> TokenPair:
    return TokenPair(access, NOW + expires_in, refresh, NOW + timedelta(days=30), obtained_at=NOW, extra={"shop_id": 8812})


def store(tmp_path: Path, now: datetime = NOW) -> TokenStore:
    return TokenStore(tmp_path / "tokens", clock=lambda: now)


class Renewer:
    """A fake provider refresh: counts calls and hands out numbered pairs good for 4 hours."""

    def __init__(self) -> None:
        self.calls: list[TokenPair | None] = []

    def __call__(self, current: TokenPair | None) -> TokenPair:
        self.calls.append(current)
        return pair(f"at-renewed-{len(self.calls)}", timedelta(hours=4), refresh=f"rt-renewed-{len(self.calls)}")


def test_save_load_round_trip(tmp_path) -> None:
    s = store(tmp_path)
    original = pair("at-0001", timedelta(hours=4))
    s.save("shopee", "shop/8812", original)
    assert s.load("shopee", "shop/8812") == original
    assert s.load("shopee", "other") is None
    assert TokenStore(tmp_path / "tokens").load("shopee", "shop/8812") == original  # a new instance reads it


def test_file_mode_is_0600_and_no_temp_left(tmp_path) -> None:
    s = store(tmp_path)
    s.save("shopee", "8812", pair("at-0001", timedelta(hours=4)))
    s.save("shopee", "8812", pair("at-0002", timedelta(hours=4)))
    files = [p for p in (tmp_path / "tokens").iterdir() if p.suffix == ".json"]
    assert [p.name for p in files] == ["shopee--8812.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert not list((tmp_path / "tokens").glob("*.tmp"))
    assert s.load("shopee", "8812").access_token == "at-0002"


def test_loaded_tokens_are_registered_secrets(tmp_path) -> None:
    s = store(tmp_path)
    s.save("shopee", "8812", pair("at-secret-abcdef", timedelta(hours=4), refresh="rt-secret-abcdef"))
    redact.clear_secrets()
    s.load("shopee", "8812")
    assert redact.redact_text("token at-secret-abcdef and rt-secret-abcdef") == "token *** and ***"


def test_expires_within() -> None:
    p = pair("at", timedelta(minutes=5))
    assert p.expires_within(timedelta(minutes=10), NOW)
    assert not p.expires_within(timedelta(minutes=1), NOW)
    assert p.expires_within(timedelta(0), NOW + timedelta(minutes=5))


def test_valid_returns_the_stored_pair_when_fresh(tmp_path) -> None:
    s, renew = store(tmp_path), Renewer()
    fresh = pair("at-0001", timedelta(hours=1))
    s.save("shopee", "8812", fresh)
    assert s.valid("shopee", "8812", renew) == fresh
    assert renew.calls == []


def test_valid_renews_close_to_expiry_and_persists_first(tmp_path) -> None:
    s = store(tmp_path)
    old = pair("at-0001", timedelta(minutes=5))
    s.save("shopee", "8812", old)
    renew = Renewer()

    got = s.valid("shopee", "8812", renew)
    assert renew.calls == [old]
    assert got.access_token == "at-renewed-1"
    assert TokenStore(tmp_path / "tokens").load("shopee", "8812") == got  # on disk by the time it is returned
    assert s.valid("shopee", "8812", renew) == got and len(renew.calls) == 1


def test_valid_with_nothing_stored_asks_renew(tmp_path) -> None:
    s, renew = store(tmp_path), Renewer()
    assert s.valid("shopee", "8812", renew).access_token == "at-renewed-1"
    assert renew.calls == [None]


def test_renew_failure_keeps_the_stored_pair(tmp_path) -> None:
    s = store(tmp_path)
    old = pair("at-0001", timedelta(minutes=1))
    s.save("shopee", "8812", old)

    def refused(current):
        raise AuthError("shopee/8812: refresh token rejected; run `shipetl auth`")

    with pytest.raises(AuthError):
        s.valid("shopee", "8812", refused)
    assert s.load("shopee", "8812") == old


def test_force_renews_a_fresh_pair_the_provider_rejected(tmp_path) -> None:
    s, renew = store(tmp_path), Renewer()
    rejected = pair("at-0001", timedelta(hours=3))
    s.save("shopee", "8812", rejected)
    got = s.valid("shopee", "8812", renew, force=True, stale=rejected)
    assert got.access_token == "at-renewed-1" and renew.calls == [rejected]
    assert s.load("shopee", "8812") == got


def test_force_does_not_renew_what_another_process_already_replaced(tmp_path) -> None:
    s, renew = store(tmp_path), Renewer()
    rejected = pair("at-0001", timedelta(hours=3))
    replaced = pair("at-0002", timedelta(hours=4))
    s.save("shopee", "8812", replaced)  # another run refreshed after we read at-0001
    assert s.valid("shopee", "8812", renew, force=True, stale=rejected) == replaced
    assert renew.calls == []


# ----------------------------------------------------------------------------- several processes


def _renew_in_child(directory: str, counter: str, barrier) -> None:
    """Child process: wait for the others, then ask for a valid pair; renew() appends to a counter file."""

    def renew(current: TokenPair | None) -> TokenPair:
        with open(counter, "a") as fh:
            fh.write("renewed\n")
        import time

        time.sleep(0.3)  # a slow provider: the others queue on the lock meanwhile
        return TokenPair("at-from-child-" + str(os.getpid()), datetime.now(UTC) + timedelta(hours=4), "rt-new")

    barrier.wait()
    got = TokenStore(Path(directory)).valid("shopee", "8812", renew)
    assert got.access_token.startswith("at-from-child-")


def test_processes_renew_an_expired_pair_once(tmp_path) -> None:
    directory, counter = tmp_path / "tokens", tmp_path / "renewals.txt"
    TokenStore(directory).save("shopee", "8812", TokenPair("at-expired", datetime.now(UTC) - timedelta(minutes=1), "rt-1"))
    # spawn, not fork: the test process has DuckDB and server threads a forked child would inherit half-alive
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_renew_in_child, args=(str(directory), str(counter), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert counter.read_text().splitlines() == ["renewed"]
    assert TokenStore(directory).load("shopee", "8812").access_token.startswith("at-from-child-")


def test_pair_persisted_by_one_process_is_read_by_the_next(tmp_path) -> None:
    directory = tmp_path / "tokens"
    code = textwrap.dedent(f"""
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from shipetl.tokens import TokenPair, TokenStore
        TokenStore(Path({str(directory)!r})).valid(
            "shopee", "8812", lambda cur: TokenPair("at-written-by-child", datetime.now(UTC) + timedelta(hours=4), "rt-2"))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    renew = Renewer()
    got = TokenStore(directory).valid("shopee", "8812", renew)
    assert got.access_token == "at-written-by-child" and got.refresh_token == "rt-2"
    assert renew.calls == []


@pytest.mark.parametrize("content", [b'{"access_token": "at-1", "refre', b'{"unexpected": 1}', b""])
def test_a_damaged_token_file_names_itself_and_the_fix(tmp_path, content) -> None:
    from shipetl.errors import ConfigError

    s = store(tmp_path)
    s.save("shopee", "shop-1", pair("at-1", timedelta(hours=4)))
    path = next(s.directory.glob("*.json"))
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        s.load("shopee", "shop-1")
    assert str(info.value).startswith(f"{path}: unreadable token file") and "delete it and run again" in str(info.value)
