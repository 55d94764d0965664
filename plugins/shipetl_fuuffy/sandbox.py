"""Fuuffy's API in `shipetl sandbox`: orders and SF Express / Kerry routes from a seeded world.

Auth, envelopes, limits and quirks as providers.md 4 and 6.4 describe the live API: client-credentials
tokens (3600 s, no refresh), ``401000`` / ``invalid_token`` / ``401021``, ``400000`` with ``error_trace``,
``ORDER_NOT_FOUND``, 403 for another member's order, ``500999`` and latency from the courier, two rate
windows with ``X-RateLimit-*`` and 429, ``data`` and ``tracking_msg_list`` now and then sent as JSON strings,
scans newest-first or oldest-first, naive Hong Kong times. The module stays whole (world, rendering,
routes) because all three read the same storyline tables. Ground truth (``World.expected_*``) comes from the
storyline, not from the payloads, so tests compare what the pipeline loaded against what is true.

Knobs in ``settings.extra`` (all optional): ``fuuffy_clients`` ({client_id: secret}), ``fuuffy_token_ttl_s``,
``fuuffy_token_max_uses`` (a token dies after that many API calls: expiry in the middle of a run),
``fuuffy_rate_per_minute`` / ``fuuffy_rate_per_hour`` / ``fuuffy_rate_window_s`` (length of the "minute";
the hour is 60 of them), ``fuuffy_courier_latency_ms``, ``fuuffy_courier_failures`` (order ids or tracking
numbers whose tracking always answers 500999), ``fuuffy_clock`` (ISO). Admin routes: ``POST /_tokens/expire``,
``GET /_stats``, ``GET|POST /_clock``.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings
from shipetl.sandbox.seed import fake_id, fake_name, instant_between, rng, weighted

# --- Provider facts and storyline tables -----------------------------------------------------------

HK = ZoneInfo("Asia/Hong_Kong")
DEFAULT_CLOCK = datetime(2025, 12, 20, tzinfo=UTC)
ORDERS_START = datetime(2025, 10, 15, tzinfo=UTC)
ORDERS_END = datetime(2025, 12, 18, tzinfo=UTC)
ORDERS_AT_SCALE_1 = 300
FIRST_ORDER_ID = 3550000
FOREIGN_ORDER_IDS = ("3549001", "3549002")  # another member's orders: 403 on tracking
DEFAULT_CLIENTS = {"sandbox-client": "sandbox-secret-7f3e"}
TOKEN_TTL_S = 3600
# Generous by default so the demo is quick; the live API allows 100 a minute and 1000 an hour.
DEFAULT_RATE_PER_MINUTE = 6000
DEFAULT_RATE_PER_HOUR = 60000
PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX = 20, 100
ORDER_STATUSES = ("DRAFT", "PENDING_CONFIRM", "PENDING_PROCESSING", "PROCESSING", "READY_TO_SHIP", "PENDING_PICKUP",
                  "PICKUP_COMPLETED", "IN_TRANSIT", "DELIVERED", "COMPLETED", "CANCELLED")

COURIERS = {"Sf Express": 85, "Kerry Express": 10, "Hongkong Post": 5}
CARRIER_CODES = {"Sf Express": "sf_express", "Kerry Express": "kerry_express", "Hongkong Post": "hongkong_post"}
SERVICES = {"Sf Express": ("SF Standard Express", "SF Economy Express"), "Kerry Express": ("Kerry Standard",),
            "Hongkong Post": ("Local Parcel",)}
DESTINATIONS = (("Hong Kong", "HK"), ("HONG KONG", "HK"), ("Macau", "MO"), ("China", "CN"), ("Taiwan", "TW"),
                ("Singapore", "SG"), ("Malaysia", "MY"))
HK_PLACES = ("香港", "葵涌", "觀塘", "沙田", "荃灣", "九龍灣", "將軍澳")
CN_PLACES = ("深圳市", "广州市", "东莞市")
DISTRICTS = ("Kwun Tong", "Sha Tin", "Tsuen Wan", "Mong Kok", "Central", "Causeway Bay")

# Storyline step -> (SF opCode, message, canonical status of the scan). ``{p}`` is the place.
SF_STEPS: dict[str, tuple[str, str, str]] = {
    "collected": ("50", "顺丰速运 已收取快件", "in_transit"),
    "collected_54": ("54", "顺丰速运 已收取快件（上门收件）", "in_transit"),
    "arrived": ("30", "快件到达 【{p}集散中心】", "in_transit"),
    "departed": ("31", "快件离开 【{p}集散中心】,正发往下一站", "in_transit"),
    "transport": ("36", "快件在【{p}中转场】完成分拣,准备发往下一站", "in_transit"),
    "unconfirmed": ("607", "快件已到达海关监管区", "unknown"),
    "outlet": ("130", "快件到达 【{p}营业点】", "in_transit"),
    "out_for_delivery": ("44", "快件交给陈先生，正在派送途中（联系电话：5550 1234）", "out_for_delivery"),
    "handed": ("204", "快件已交给派件员,正在派送途中", "out_for_delivery"),
    "failed": ("70", "派送不成功，已与收件人约定新派送时间", "failed_attempt"),
    "delivered": ("80", "已签收,感谢使用顺丰,期待再次为您服务", "delivered"),
    "locker": ("80", "快件已放至顺丰自助柜，请凭取件码取件", "available_for_pickup"),
    "note": ("8000", "快件已签收，如有疑问请致电客服", "delivered"),
    "returned": ("631", "快件已退回寄件人", "returned"),
}
# Kerry and Hongkong Post relay their own codes, which no table maps: their scans stay ``unknown`` and
# the parcel's status comes from the Chinese order_status text.
OTHER_STEPS: dict[str, tuple[str, str, str]] = {
    "collected": ("PU", "Shipment picked up 已收件", "unknown"),
    "arrived": ("AR", "Arrived at hub {p}", "unknown"),
    "departed": ("DP", "Departed hub {p}", "unknown"),
    "transport": ("IT", "In transit 運送中", "unknown"),
    "outlet": ("AD", "Arrived at delivery centre", "unknown"),
    "out_for_delivery": ("OD", "Out for delivery 派送中", "unknown"),
    "delivered": ("DL", "Delivered 已簽收", "unknown"),
}
# Scenario -> (weight, steps, order code at the end, tracking order_status text at the end).
SCENARIOS: dict[str, tuple[int, tuple[str, ...], str, str]] = {
    "draft": (3, (), "DRAFT", "草稿"),
    "pending": (6, (), "pending_processing", "待處理"),
    "cancelled": (3, (), "CANCELLED", "已取消"),
    "label": (8, (), "READY_TO_SHIP", "列印及安排取件"),
    "collected": (6, ("collected",), "PICKUP_COMPLETED", "列印及安排取件"),
    "in_transit": (14, ("collected", "arrived", "departed", "transport", "arrived"), "IN_TRANSIT", "運送中"),
    "out_for_delivery": (8, ("collected", "arrived", "departed", "outlet", "out_for_delivery"), "IN_TRANSIT", "派送中"),
    "delivered": (38, ("collected", "arrived", "departed", "transport", "outlet", "out_for_delivery", "delivered",
                       "note"), "DELIVERED", "已簽收"),
    "locker": (5, ("collected", "arrived", "departed", "outlet", "handed", "locker"), "IN_TRANSIT", "待取件"),
    "failed": (5, ("collected", "arrived", "departed", "outlet", "out_for_delivery", "failed"), "IN_TRANSIT", "派送異常"),
    "returned": (4, ("collected", "arrived", "departed", "outlet", "out_for_delivery", "failed", "returned"),
                 "COMPLETED", "已退回"),
}
NO_PARCEL = ("draft", "pending", "cancelled")
NOT_OTHER = ("locker", "failed", "returned")  # storylines only SF tells apart
# What each order_status text the sandbox sends means (the truth for couriers whose codes nobody maps).
TEXT_STATUS = {"草稿": "pending", "待處理": "pending", "已取消": "exception", "列印及安排取件": "info_received",
               "運送中": "in_transit", "派送中": "out_for_delivery", "已簽收": "delivered", "待取件": "available_for_pickup",
               "派送異常": "out_for_delivery", "已退回": "returned"}
FINAL_TRUTH = ("delivered", "returned")


@dataclass
class Scan:
    """One scan: its true instant, rendered fields and its true canonical status."""

    utc: datetime
    step: str
    code: str
    message: str
    location: str
    status: str
    seq: int  # position in the storyline: breaks same-second ties, as SF's code sequence does

    def payload(self) -> dict[str, str]:
        return {"code": self.code, "location": self.location, "date": hk_text(self.utc), "message": self.message}


@dataclass
class Parcel:
    tracking_number: str
    scans: list[Scan]
    oldest_first: bool
    data_as_string: bool
    list_as_string: bool

    def visible(self, clock: datetime) -> list[Scan]:
        return [s for s in self.scans if s.utc <= clock]


@dataclass
class Order:
    """An order, its parcels' storylines and how its payloads are spelled."""

    order_id: str
    created: datetime
    scenario: str
    courier: str
    service: str
    destination: tuple[str, str]
    export_country: str
    parcels: list[Parcel]
    receiver: dict[str, str]
    amounts: dict[str, str]
    time_style: str  # "offset", "z" or "naive"
    lower_case: bool
    labelled: datetime  # when the tracking number appears

    @property
    def carrier_code(self) -> str:
        return CARRIER_CODES[self.courier]

    def stage(self, clock: datetime) -> tuple[str, str]:
        """(order code, tracking order_status text) at ``clock``."""
        _, steps, code, text = SCENARIOS[self.scenario]
        if self.scenario in NO_PARCEL:
            return code, text
        seen = self.parcels[0].visible(clock)
        if clock < self.labelled:
            return "PROCESSING", "待處理"
        if len(seen) == len(self.parcels[0].scans):
            return code, text
        if not seen:
            return "READY_TO_SHIP", "列印及安排取件"
        last = max(seen, key=lambda s: (s.utc, s.seq)).step
        if last in ("out_for_delivery", "handed"):
            return "IN_TRANSIT", "派送中"
        return "IN_TRANSIT", "運送中"

    def numbers(self, clock: datetime) -> list[str]:
        return [] if clock < self.labelled or not self.parcels else [p.tracking_number for p in self.parcels]


def hk_text(utc: datetime) -> str:
    """A UTC instant as Fuuffy writes it: naive Hong Kong wall time."""
    return utc.astimezone(HK).strftime("%Y-%m-%d %H:%M:%S")


def _order_time(utc: datetime, style: str) -> str:
    if style == "z":
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "offset":
        return utc.astimezone(HK).isoformat()
    return hk_text(utc)


class World:
    """Every order of one seed, the sandbox clock, and the ground truth."""

    def __init__(self, orders: list[Order], clock: datetime = DEFAULT_CLOCK) -> None:
        self.orders = orders
        self.clock = clock
        self.by_id = {o.order_id: o for o in orders}
        self.by_tracking = {p.tracking_number: (o, p) for o in orders for p in o.parcels}

    def visible_orders(self, clock: datetime | None = None) -> list[Order]:
        clock = clock or self.clock
        return [o for o in self.orders if o.created <= clock]

    def order_json(self, o: Order, clock: datetime | None = None) -> dict[str, Any]:
        """One element of ``data.order_list`` (field names beyond the seed are this sandbox's choice)."""
        clock = clock or self.clock
        code, _ = o.stage(clock)
        seen = [s for p in o.parcels for s in p.visible(clock)]
        updated = max([o.created, *(s.utc for s in seen)] + ([o.labelled] if o.labelled <= clock else []))
        return {
            "order_id": o.order_id, "order_status": code.lower() if o.lower_case else code,
            "create_time": _order_time(o.created, o.time_style), "update_time": _order_time(updated, o.time_style),
            "shipping_provider": o.courier, "service_type": o.service, "tracking_numbers": o.numbers(clock),
            "export_country": o.export_country, "destination_country": o.destination[0], **o.amounts,
            "receiver_name": o.receiver["name"], "receiver_phone": o.receiver["phone"],
            "receiver_address": o.receiver["address"], "remark": "易碎品 fragile" if int(o.order_id) % 7 == 0 else "",
        }

    def tracking_json(self, o: Order, p: Parcel | None, clock: datetime | None = None) -> dict[str, Any]:
        """The body of ``GET /v1/tracking/get``: for parcel ``p``, or for an order with none yet."""
        clock = clock or self.clock
        _, text = o.stage(clock)
        labelled = p is not None and clock >= o.labelled
        scans = [s.payload() for s in p.visible(clock)] if labelled else []
        if p is not None and not p.oldest_first:
            scans.reverse()
        msgs: Any = orjson.dumps(scans).decode() if p is not None and p.list_as_string else scans
        data: Any = {
            "tracking_number": p.tracking_number if labelled else "", "order_id": o.order_id, "order_status": text,
            "export_country": o.export_country, "destination_country": o.destination[0],
            "shipping_provider": o.courier, "courier_name": o.courier, "tracking_msg_list": msgs, "message": "OK",
        }
        if p is not None and p.data_as_string:
            data = orjson.dumps(data).decode()
        return {"data": data}

    # --- ground truth ---------------------------------------------------------------------------

    def expected_orders(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Per order visible at ``clock``: order_id, status_raw (as sent), created_at (UTC), destination (ISO)."""
        clock = clock or self.clock
        out = []
        for o in self.visible_orders(clock):
            body = self.order_json(o, clock)
            out.append({"order_id": o.order_id, "status_raw": body["order_status"], "created_at": o.created,
                        "destination_country": o.destination[1]})
        return out

    def expected_shipments(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Per parcel with a tracking number at ``clock``: tracking_number, order_id, carrier_code, status, is_final."""
        clock = clock or self.clock
        out = []
        for o in self.visible_orders(clock):
            if not o.numbers(clock):
                continue
            _, text = o.stage(clock)
            for p in o.parcels:
                setting = [s for s in p.visible(clock) if s.status != "unknown" and s.code != "8000"]
                status = TEXT_STATUS[text]
                if setting:
                    status = max(setting, key=lambda s: (s.utc, s.seq)).status
                out.append({"tracking_number": p.tracking_number, "order_id": o.order_id,
                            "carrier_code": o.carrier_code, "status": status, "is_final": status in FINAL_TRUTH,
                            "status_raw": text})
        return out

    def expected_events(self, clock: datetime | None = None) -> list[dict[str, Any]]:
        """Every scan visible at ``clock``: tracking_number, carrier_code, utc, local (as sent), code, message, status."""
        clock = clock or self.clock
        return [{"tracking_number": p.tracking_number, "carrier_code": o.carrier_code, "utc": s.utc,
                 "local": hk_text(s.utc), "code": s.code, "message": s.message, "status": s.status}
                for o in self.visible_orders(clock) if clock >= o.labelled for p in o.parcels for s in p.visible(clock)]


# --- Building the world ----------------------------------------------------------------------------

def build_world(seed: int = 42, scale: float = 1.0, clock: datetime = DEFAULT_CLOCK) -> World:
    """The same orders for the same seed and scale; ids ascend with creation time."""
    r = rng(seed, "fuuffy", "orders")
    count = max(20, round(ORDERS_AT_SCALE_1 * scale))
    created = sorted(instant_between(r, ORDERS_START, ORDERS_END) for _ in range(count))
    used: set[str] = set()
    orders = [_build_order(r, FIRST_ORDER_ID + i * 3 + r.randrange(3), t, used) for i, t in enumerate(created)]
    return World(orders, clock)


def _tracking_number(r: random.Random, courier: str, used: set[str]) -> str:
    while True:
        number = {"Sf Express": "SF" + fake_id(r, 13), "Kerry Express": "KE" + fake_id(r, 10) + "HK",
                  "Hongkong Post": "CP" + fake_id(r, 9) + "HK"}[courier]
        if number not in used:
            used.add(number)
            return number


def _build_order(r: random.Random, order_id: int, created: datetime, used: set[str]) -> Order:
    courier = weighted(r, COURIERS)
    scenario = weighted(r, {k: v[0] for k, v in SCENARIOS.items()})
    if courier != "Sf Express" and scenario in NOT_OTHER:
        scenario = "delivered"
    labelled = created + timedelta(hours=r.randint(1, 20), seconds=r.randint(0, 3599))
    parcels = []
    if scenario not in NO_PARCEL:
        n = weighted(r, {1: 80, 2: 15, 3: 5})
        start = labelled + timedelta(hours=r.randint(2, 30))
        for i in range(n):
            scans = _scans(r, courier, SCENARIOS[scenario][1], start + timedelta(minutes=7 * i))
            parcels.append(Parcel(_tracking_number(r, courier, used), scans, oldest_first=r.random() < 0.5,
                                  data_as_string=r.random() < 0.12, list_as_string=r.random() < 0.12))
    destination = r.choice(DESTINATIONS)
    amount = r.randint(40, 900)
    return Order(
        order_id=str(order_id), created=created, scenario=scenario, courier=courier,
        service=r.choice(SERVICES[courier]), destination=destination,
        export_country=r.choice(("HONG KONG", "Hong Kong")), parcels=parcels,
        receiver={"name": fake_name(r).title(), "phone": f"+852 5{r.randint(100, 999)} {r.randint(1000, 9999)}",
                  "address": f"{r.randint(1, 200)} {r.choice(DISTRICTS)} Road, {r.choice(HK_PLACES)}"},
        amounts={"currency": "HKD", "total_amount": f"{amount}.00", "shipping_fee": f"{r.choice((30, 45, 60))}.00"},
        time_style=r.choice(("offset", "offset", "z", "naive")), lower_case=r.random() < 0.2, labelled=labelled,
    )


def _scans(r: random.Random, courier: str, steps: tuple[str, ...], start: datetime) -> list[Scan]:
    sf = courier == "Sf Express"
    table = SF_STEPS if sf else OTHER_STEPS
    scans: list[Scan] = []
    t = start
    place = r.choice(CN_PLACES if r.random() < 0.3 else HK_PLACES)
    for i, step in enumerate(steps):
        if sf and step == "collected" and r.random() < 0.2:
            step = "collected_54"
        if step not in table:
            step = "delivered" if step in ("locker", "handed", "note") else "transport"
            if any(s.step == step for s in scans):
                continue
        same_second = False
        if i:
            same_second = step in ("departed", "out_for_delivery") and r.random() < 0.25
            t += timedelta(seconds=0) if same_second else timedelta(minutes=r.randint(20, 900), seconds=r.randint(0, 59))
            if step == "note":
                t = scans[-1].utc + timedelta(seconds=r.randint(2, 40))
        code, message, status = table[step]
        place = r.choice(HK_PLACES) if step in ("outlet", "out_for_delivery") else place
        scans.append(Scan(t, step, code, message.format(p=place), place, status, len(scans)))
        if i and same_second and r.random() < 0.5:
            # Position in the array says nothing about order within one second (providers.md 6.4).
            scans[-2], scans[-1] = scans[-1], scans[-2]
        if sf and step == "transport" and r.random() < 0.1:
            t += timedelta(minutes=r.randint(5, 60))
            code, message, status = SF_STEPS["unconfirmed"]
            scans.append(Scan(t, "unconfirmed", code, message, place, status, len(scans)))
    return scans


# --- HTTP -----------------------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, code: str, reason: str, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    """Fuuffy's failure envelope ``{"error": {code, code_reason, message, error_code?, error_trace?}}``."""
    return _json({"error": {"code": code, "code_reason": reason, "message": message, **extra}}, status, headers)


def _bad_request(field_name: str, message: str) -> Response:
    return error_response(400, "400000", "BAD_REQUEST", "Bad Request",
                          error_trace=[{"field": field_name, "message": message}])


@dataclass
class _Token:
    client_id: str
    expires: float
    uses: int = 0


class RateWindows:
    """Fixed windows per client: ``per_minute`` in each window of ``window_s``, ``per_hour`` in 60 of them."""

    def __init__(self, per_minute: int, per_hour: int, window_s: float) -> None:
        self.limits = ((per_minute, window_s), (per_hour, window_s * 60))
        self._used: dict[tuple[str, int], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> tuple[bool, int, int, float]:
        """Count one request: (allowed, limit, remaining, reset epoch s) of the tightest window."""
        now = time.time()
        with self._lock:
            windows = []
            for i, (limit, length) in enumerate(self.limits):
                start, used = self._used.get((client, i), (now, 0))
                if now - start >= length:
                    start, used = now, 0
                windows.append((i, limit, start + length, start, used))
            allowed = all(used < limit for _, limit, _, _, used in windows)
            if allowed:
                windows = [(i, limit, reset, start, used + 1) for i, limit, reset, start, used in windows]
            for i, _, _, start, used in windows:
                self._used[(client, i)] = (start, used)
            # Report the window with the fewest requests left; of two exhausted ones, the later reset.
            _, limit, reset, _, used = min(windows, key=lambda w: (w[1] - w[4], -w[2]))
            return allowed, limit, max(0, limit - used), reset

    def reset(self) -> None:
        with self._lock:
            self._used.clear()


@dataclass
class SandboxState:
    """Tokens issued, counters, and the knobs of one Fuuffy sandbox."""

    clients: dict[str, str]
    ttl_s: float
    max_uses: int | None
    courier_latency_ms: int
    courier_failures: frozenset[str]
    tokens: dict[str, _Token] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: {"token_requests": 0, "api_requests": 0, "rejected_tokens": 0,
                                                           "throttled": 0, "exhausted": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            for key in self.stats:
                self.stats[key] = 0


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(reset))}


def _parse_date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date as YYYY-MM-DD") from None


def create_app(settings: SandboxSettings) -> Starlette:
    """The Fuuffy sandbox app; core mounts it at ``/fuuffy`` (routes below are ``/v1/...``)."""
    extra = settings.extra
    world = build_world(settings.seed, settings.scale)
    if extra.get("fuuffy_clock"):
        world.clock = datetime.fromisoformat(str(extra["fuuffy_clock"])).astimezone(UTC)
    state = SandboxState(
        clients=dict(extra.get("fuuffy_clients", DEFAULT_CLIENTS)),
        ttl_s=float(extra.get("fuuffy_token_ttl_s", TOKEN_TTL_S)),
        max_uses=int(extra["fuuffy_token_max_uses"]) if extra.get("fuuffy_token_max_uses") else None,
        courier_latency_ms=int(extra.get("fuuffy_courier_latency_ms", 0)),
        courier_failures=frozenset(str(x) for x in extra.get("fuuffy_courier_failures", ())),
    )
    limiter = RateWindows(int(extra.get("fuuffy_rate_per_minute", DEFAULT_RATE_PER_MINUTE)),
                          int(extra.get("fuuffy_rate_per_hour", DEFAULT_RATE_PER_HOUR)),
                          float(extra.get("fuuffy_rate_window_s", 60)))

    async def issue_token(request: Request) -> Response:
        with state.lock:
            state.stats["token_requests"] += 1
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _bad_request("grant_type", "send a form body (application/x-www-form-urlencoded)")
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _bad_request("grant_type", "grant_type must be client_credentials")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id or not secret:
            return _bad_request("client_id" if not client_id else "client_secret", "client_id and client_secret are required")
        if state.clients.get(str(client_id)) != secret:
            return error_response(401, "401021", "invalid_client_id_or_client_secret", "Invalid client id or client secret")
        token = secrets.token_urlsafe(32)
        with state.lock:
            state.tokens[token] = _Token(str(client_id), time.time() + state.ttl_s)
        return _json({"data": {"access_token": token, "token_type": "Bearer", "expires_in": int(state.ttl_s)}})

    def guard(request: Request) -> Response | tuple[str, dict[str, str]]:
        """The caller's client id and rate headers, or the error reply (bad token, throttled)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        with state.lock:
            entry = state.tokens.get(token) if scheme.lower() == "bearer" else None
            if entry is not None and (entry.expires <= time.time()
                                      or (state.max_uses is not None and entry.uses >= state.max_uses)):
                state.stats["rejected_tokens"] += 1
                return error_response(401, "invalid_token", "UNAUTHORIZED", "The access token expired")
            if entry is None:
                state.stats["rejected_tokens"] += 1
                return error_response(401, "401000", "UNAUTHORIZED", "Unauthorized")
            entry.uses += 1
            state.stats["api_requests"] += 1
        allowed, limit, remaining, reset = limiter.admit(entry.client_id)
        headers = _rate_headers(limit, remaining, reset)
        with state.lock:
            if not allowed:
                state.stats["throttled"] += 1
            elif remaining == 0:
                state.stats["exhausted"] += 1  # this reply tells the client to wait for the reset
        if not allowed:
            return error_response(429, "rate_limit_exceeded", "TOO_MANY_REQUESTS", "Rate limit exceeded", headers=headers)
        return entry.client_id, headers

    async def list_orders(request: Request) -> Response:
        checked = guard(request)
        if isinstance(checked, Response):
            return checked
        _, headers = checked
        q = request.query_params
        try:
            start, end = _parse_date(q.get("start_date"), "start_date"), _parse_date(q.get("end_date"), "end_date")
        except ValueError as exc:
            return _bad_request(str(exc).split()[0], str(exc))
        try:
            page, limit = int(q.get("page", 1)), int(q.get("limit", PAGE_LIMIT_DEFAULT))
        except ValueError:
            return _bad_request("page", "page and limit must be integers")
        if page < 1 or not 1 <= limit <= PAGE_LIMIT_MAX:
            return _bad_request("limit" if page >= 1 else "page", f"limit must be 1-{PAGE_LIMIT_MAX}, page at least 1")
        sort_key, sort_dir = q.get("sort_key", "create_time"), q.get("sort_dir", "DESC").upper()
        if sort_key not in ("create_time", "order_id") or sort_dir not in ("ASC", "DESC"):
            return _bad_request("sort_key", "sort_key is create_time or order_id, sort_dir ASC or DESC")
        wanted = q.get("order_status")
        clock = world.clock
        # Filter dates are Hong Kong dates; end_date is treated as exclusive (its meaning is unconfirmed).
        items = [o for o in world.visible_orders(clock)
                 if (start is None or o.created.astimezone(HK).date() >= start)
                 and (end is None or o.created.astimezone(HK).date() < end)
                 and (not wanted or o.stage(clock)[0].upper() == wanted.upper())]
        items.sort(key=(lambda o: int(o.order_id)) if sort_key == "order_id" else (lambda o: o.created),
                   reverse=sort_dir == "DESC")
        total = len(items)
        chunk = items[(page - 1) * limit: page * limit]
        return _json({"data": {"order_list": [world.order_json(o, clock) for o in chunk]},
                      "pagination": {"total": total, "page": page, "per_page": limit,
                                     "total_pages": math.ceil(total / limit)}}, headers=headers)

    async def track(order: Order, parcel: Parcel | None, headers: dict[str, str]) -> Response:
        if state.courier_latency_ms:
            await asyncio.sleep(state.courier_latency_ms / 1000)
        keys = {order.order_id} | ({parcel.tracking_number} if parcel else set())
        if keys & state.courier_failures:
            return error_response(500, "500999", "API_ERROR", "Api Error, please contact customer service",
                                  headers=headers)
        return _json(world.tracking_json(order, parcel), headers=headers)

    async def track_by_order(request: Request) -> Response:
        checked = guard(request)
        if isinstance(checked, Response):
            return checked
        _, headers = checked
        order_id = request.path_params["order_id"]
        if order_id in FOREIGN_ORDER_IDS:
            return _json({"error": "Access forbidden for this resource"}, 403, headers)
        order = world.by_id.get(order_id)
        if order is None or order.created > world.clock:
            return error_response(400, "400000", "BAD_REQUEST", "Bad Request", error_code="ORDER_NOT_FOUND",
                                  headers=headers)
        return await track(order, order.parcels[0] if order.parcels else None, headers)

    async def track_by_number(request: Request) -> Response:
        checked = guard(request)
        if isinstance(checked, Response):
            return checked
        _, headers = checked
        number = request.query_params.get("tracking_number")
        if not number:
            return error_response(400, "400000", "BAD_REQUEST", "Bad Request", error_code="TRACKING_NUMBER_REQUIRED",
                                  error_trace=[{"field": "order_id", "message":
                                                "order_id is required when tracking_number is not provided"}],
                                  headers=headers)
        found = world.by_tracking.get(number)
        if found is None or world.clock < found[0].labelled:
            return error_response(400, "400000", "BAD_REQUEST", "Bad Request", error_code="ORDER_NOT_FOUND",
                                  headers=headers)
        return await track(found[0], found[1], headers)

    async def expire_tokens(request: Request) -> Response:
        with state.lock:
            for entry in state.tokens.values():
                entry.expires = 0.0
            count = len(state.tokens)
        return _json({"expired": count})

    async def stats(request: Request) -> Response:
        with state.lock:
            return _json(dict(state.stats))

    async def get_clock(request: Request) -> Response:
        return _json({"now": world.clock.isoformat()})

    async def set_clock(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body() or b"{}")
            world.clock = datetime.fromisoformat(str(data["now"]).replace("Z", "+00:00")).astimezone(UTC)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return _json({"error": 'body must be {"now": "<ISO 8601 date-time with offset>"}'}, 400)
        return _json({"now": world.clock.isoformat()})

    def reset() -> None:
        limiter.reset()
        state.reset()

    app = Starlette(routes=[
        Route("/v1/auth/token", issue_token, methods=["POST"]),
        Route("/v1/order/list", list_orders, methods=["GET"]),
        Route("/v1/tracking/get", track_by_number, methods=["GET"]),
        Route("/v1/tracking/get/{order_id}", track_by_order, methods=["GET"]),
        Route("/_tokens/expire", expire_tokens, methods=["POST"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_clock", get_clock, methods=["GET"]),
        Route("/_clock", set_clock, methods=["POST"]),
    ])
    app.state.world = world
    app.state.fuuffy = state
    app.state.reset = reset
    return app
