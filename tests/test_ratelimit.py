import threading

import pytest

from shipetl.ratelimit import RateLimit, RateLimiter, TokenBucket, limiter_for


class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def slots(limiter: RateLimiter, n: int) -> None:
    """Take ``n`` slots of ``limiter`` one after another."""
    for _ in range(n):
        with limiter.slot():
            pass


def test_ten_acquires_at_five_per_second_burst_one_take_about_two_seconds():
    t = FakeTime()
    bucket = TokenBucket(5, 1, clock=t.clock, sleep=t.sleep)
    for _ in range(10):
        bucket.acquire()
    assert t.now - 1000.0 == pytest.approx(1.8)


def test_burst_is_free_then_rate_applies():
    t = FakeTime()
    bucket = TokenBucket(2, 4, clock=t.clock, sleep=t.sleep)
    for _ in range(4):
        bucket.acquire()
    assert t.sleeps == []
    bucket.acquire()
    assert t.sleeps == [pytest.approx(0.5)]


def test_two_buckets_combine_the_slower_one_wins_over_time():
    t = FakeTime()
    limiter = RateLimit(per_minute=100, per_hour=1000, burst=5).build(clock=t.clock, sleep=t.sleep)
    assert len(limiter.buckets) == 2
    slots(limiter, 20)
    # After the burst of 5, the minute's bucket (one per 0.6 s) paces the rest: the hour's 1,000 are far off.
    assert t.now - 1000.0 == pytest.approx(15 * 0.6)


def test_an_hours_budget_goes_as_fast_as_the_shorter_limits_allow_then_waits_for_the_window():
    """1,000 an hour is not one every 3.6 s: a run of 360 requests must not take 21 minutes."""
    t = FakeTime()
    limiter = RateLimit(per_hour=1000).build(clock=t.clock, sleep=t.sleep)
    slots(limiter, 1000)
    assert t.sleeps == []
    slots(limiter, 1)  # the 1,001st waits until the first is an hour old
    assert t.now - 1000.0 == pytest.approx(3600)
    slots(limiter, 1)
    assert t.now - 1000.0 == pytest.approx(3600)  # the second went out at the same instant as the first


def test_a_fractional_hourly_rate_keeps_its_average():
    t = FakeTime()
    slots(RateLimit(per_hour=0.5).build(clock=t.clock, sleep=t.sleep), 3)
    assert t.now - 1000.0 == pytest.approx(2 * 7200)


def test_per_minute_alone_spaces_requests():
    t = FakeTime()
    slots(RateLimit(per_minute=100).build(clock=t.clock, sleep=t.sleep), 3)
    assert t.now - 1000.0 == pytest.approx(1.2)


def test_pause_for_holds_the_next_slot():
    t = FakeTime()
    limiter = RateLimiter([], max_in_flight=2, clock=t.clock, sleep=t.sleep)
    limiter.pause_for(7)
    with limiter.slot():
        assert t.now == pytest.approx(1007)
    limiter.pause_for(3)
    with limiter.slot():
        assert t.now == pytest.approx(1010)
    limiter.pause_for(-5)
    with limiter.slot():
        assert t.now == pytest.approx(1010)


def test_max_in_flight_bounds_concurrency():
    limiter = RateLimiter([], max_in_flight=2)
    active = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def work():
        nonlocal active, peak
        with limiter.slot():
            with lock:
                active += 1
                peak = max(peak, active)
            release.wait(0.05)
            with lock:
                active -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert peak == 2


def test_limiter_for_shares_one_limiter_per_key():
    a = limiter_for("fuuffy/acct-test-1", RateLimit(per_minute=100, per_hour=1000))
    b = limiter_for("fuuffy/acct-test-1", RateLimit(per_second=50))
    c = limiter_for("fuuffy/acct-test-2", RateLimit(per_minute=100, per_hour=1000))
    assert a is b and a is not c


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError):
        RateLimit(per_second=0).build()
    with pytest.raises(ValueError):
        TokenBucket(1, 1).acquire(2)
