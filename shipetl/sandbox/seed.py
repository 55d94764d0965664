"""Deterministic random helpers so every provider sandbox serves the same data for the same seed."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


def rng(seed: int, *names: object) -> random.Random:
    """Return a ``random.Random`` fixed by ``seed`` and ``names``.

    The stream depends only on the arguments (a SHA-256 of their text, never ``hash()``, which is
    salted per process), so ``rng(42, "shipengine", "labels")`` yields the same numbers in every run
    and an independent stream from ``rng(42, "shipengine", "events")``.
    """
    text = "\x1f".join([str(seed), *(str(n) for n in names)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def fake_id(r: random.Random, digits: int) -> str:
    """A string of ``digits`` decimal digits, never starting with 0 (reads like a provider's id)."""
    if digits < 1:
        raise ValueError("digits must be >= 1")
    return str(r.randrange(10 ** (digits - 1), 10**digits))


def fake_alnum(r: random.Random, length: int, alphabet: str = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ") -> str:
    """A string of ``length`` characters drawn from ``alphabet`` (upper case, no I/O by default)."""
    return "".join(r.choices(alphabet, k=length))


def unique(r: random.Random, used: set[str], make: Callable[[random.Random], str]) -> str:
    """A value from ``make(r)`` not in ``used`` (and now added to it): ids that must not repeat in a world."""
    while True:
        value = make(r)
        if value not in used:
            used.add(value)
            return value


def weighted(r: random.Random, table: Mapping[T, float]) -> T:
    """Pick one key of ``table`` with probability proportional to its value."""
    keys = list(table)
    return r.choices(keys, weights=[table[k] for k in keys], k=1)[0]


def instant_between(r: random.Random, start: datetime, end: datetime, *, step_s: int = 1) -> datetime:
    """A uniformly drawn instant in ``[start, end)``, rounded down to ``step_s`` seconds."""
    span = int((end - start).total_seconds()) // step_s
    return start + timedelta(seconds=r.randrange(max(span, 1)) * step_s)


def pick(r: random.Random, items: Sequence[T]) -> T:
    """``r.choice`` with a name that reads well in data builders."""
    return r.choice(items)


FIRST_NAMES = ("JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID",
               "ELIZABETH", "MARIA", "CARLOS", "WEI", "AIKO", "PRIYA", "OMAR", "SOFIA", "LIAM")
LAST_NAMES = ("SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "LOPEZ",
              "CHEN", "NGUYEN", "PATEL", "KIM", "MULLER", "ROSSI", "TANAKA", "OKAFOR", "SILVA")


def fake_name(r: random.Random) -> str:
    """An invented person's name in upper case, as carriers print it."""
    return f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}"


def fake_phone(r: random.Random) -> str:
    """An invented US phone number in the reserved 555-01xx range."""
    return f"{r.randint(201, 989)}-555-01{r.randint(0, 99):02d}"
