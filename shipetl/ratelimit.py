"""Token buckets and bounded concurrency shared by every client of one provider account."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """A thread-safe token bucket: ``rate_per_second`` tokens refill continuously, at most ``burst`` held.

    Callers reserve tokens in arrival order (the balance may go negative) and sleep outside the lock
    until their reservation is covered, so waiting threads are served first come, first served.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = float(rate_per_second)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()

    def acquire(self, n: int = 1, sleep: Sleep | None = None) -> None:
        """Take ``n`` tokens, blocking (with ``sleep``, default the bucket's) until they are available.

        :raises ValueError: when ``n`` exceeds the burst, which could never be satisfied at once.
        """
        if n > self.burst:
            raise ValueError(f"cannot take {n} tokens from a bucket with burst {self.burst}")
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            (sleep or self._sleep)(wait)


class SlidingWindow:
    """At most ``limit`` acquisitions in any ``window`` seconds, each as early as that allows.

    For an hour's budget (Fuuffy: 1,000 an hour): a token bucket would space requests 3.6 s apart all
    night, while the API only asks that no hour holds more than 1,000; the shorter limits pace the rest.
    """

    def __init__(self, limit: float, window: float, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = max(1, int(limit))
        self.window = window * self.limit / limit  # 0.5 an hour: one every two hours
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._times: deque[float] = deque()  # when the last ``limit`` acquisitions go (or went) out

    def acquire(self, sleep: Sleep | None = None) -> None:
        """Take one, blocking (with ``sleep``, default the window's) until fewer than ``limit`` went out in the
        window before it."""
        with self._lock:
            now = self._clock()
            at = now if len(self._times) < self.limit else max(now, self._times[0] + self.window)
            self._times.append(at)
            if len(self._times) > self.limit:
                self._times.popleft()
        if at > now:
            (sleep or self._sleep)(at - now)


class RateLimiter:
    """Several token buckets (or an hour's sliding window) plus a cap on requests in flight, and a pause every
    thread honours."""

    def __init__(
        self,
        buckets: list[TokenBucket | SlidingWindow],
        max_in_flight: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.buckets = list(buckets)
        self.max_in_flight = max_in_flight
        self._semaphore = threading.BoundedSemaphore(max_in_flight)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = 0.0  # on self._clock's scale

    def pause_for(self, seconds: float) -> None:
        """Hold every request through this limiter for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        """Seconds left in the current pause; 0 when not paused."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def _wait_while_paused(self, sleep: Sleep) -> None:
        while (remaining := self.paused_for()) > 0:
            sleep(remaining)

    @contextlib.contextmanager
    def slot(self, sleep: Sleep | None = None) -> Iterator[None]:
        """Wait out any pause, take a token from every bucket, then one of ``max_in_flight`` slots.

        ``sleep`` waits instead of the limiter's own (a client's that a stopping run interrupts).
        """
        sleep = sleep or self._sleep
        self._wait_while_paused(sleep)
        for bucket in self.buckets:
            bucket.acquire(sleep=sleep)
        with self._semaphore:
            # A 429 may have paused the limiter while this thread waited for a slot.
            self._wait_while_paused(sleep)
            yield


@dataclass(frozen=True)
class RateLimit:
    """A provider account's limits; each rate given becomes one bucket and all of them apply at once.

    ``burst`` is how many requests may go out back to back (default 1: evenly spaced), applied to the
    per-second and per-minute buckets. ``per_hour`` is a sliding window (at most that many in any hour),
    not a bucket. Fuuffy, for instance, needs ``RateLimit(per_minute=100, per_hour=1000)``.
    """

    per_second: float | None = None
    per_minute: float | None = None
    per_hour: float | None = None
    burst: int | None = None
    max_in_flight: int = 8

    def build(self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> RateLimiter:
        """Make a fresh limiter with one bucket per rate given.

        :raises ValueError: when a rate is not positive or burst / max_in_flight is below 1.
        """
        burst = 1 if self.burst is None else self.burst
        buckets: list[TokenBucket | SlidingWindow] = [
            TokenBucket(rate / window, burst, clock=clock, sleep=sleep)
            for rate, window in ((self.per_second, 1.0), (self.per_minute, 60.0))
            if rate is not None
        ]
        if self.per_hour is not None:
            buckets.append(SlidingWindow(self.per_hour, 3600.0, clock=clock, sleep=sleep))
        return RateLimiter(buckets, self.max_in_flight, clock=clock, sleep=sleep)


_registry_lock = threading.Lock()
_limiters: dict[str, RateLimiter] = {}


def limiter_for(key: str, config: RateLimit) -> RateLimiter:
    """The process-wide limiter for ``key`` (e.g. ``aliexpress/app-1234``), built on first use.

    Every client of one provider account must share a limiter, or their rates add up. The first
    caller's ``config`` wins; later callers with the same key get the same limiter.
    """
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = config.build()
        return limiter
