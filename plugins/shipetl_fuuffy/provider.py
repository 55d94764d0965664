"""The Fuuffy provider: its name, its options, its streams."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from shipetl import ExtractContext, Page, Provider, RateLimit, Stream

from . import extract, mapping, statuses
from .client import DEFAULT_TIMEZONE, PAGE_SIZE_MAX, PROVIDER


class FuuffyOptions(BaseModel):
    """``options:`` of a fuuffy source."""

    model_config = ConfigDict(extra="forbid")
    account_id: str | None = Field(None, description="Name of the Fuuffy member account in the warehouse (default: the source name)")
    order_lookback_days: int = Field(30, ge=1, le=365, description="Creation dates re-listed every run (Fuuffy has no updated-since filter)")
    page_size: int = Field(PAGE_SIZE_MAX, ge=1, le=PAGE_SIZE_MAX, description="Orders per page (Fuuffy allows at most 100)")
    poll_concurrency: int = Field(4, ge=1, le=32, description="Tracking requests in flight at once")
    max_retries: int = Field(3, ge=0, le=10, description="Retries of a failing request; a tracking reply still failing with 500999 is skipped for this run")


class FuuffyProvider(Provider):
    """Orders from ``GET /v1/order/list``, tracking from ``GET /v1/tracking/get``; client-credentials token.

    Naive times are read in ``Asia/Hong_Kong`` unless the source sets ``timezone:`` (the provider does not
    state its zone). Credentials: ``client_id`` and ``client_secret``.
    """

    name = PROVIDER
    default_base_url = "https://api-gateway.fuuffy.com"
    default_timezone = DEFAULT_TIMEZONE
    # 100 a minute and 1000 an hour, both at once: the hourly one is the tighter (providers.md 4.3).
    default_rate_limit = RateLimit(per_minute=100, per_hour=1000, max_in_flight=4)
    options_model = FuuffyOptions
    secrets = ("client_id", "client_secret")
    required_secrets = ("client_id", "client_secret")
    order_states = statuses.ORDER_STATES
    streams = (
        Stream("orders", mapping.BODY, mapping.ORDER_MAPPINGS),
        Stream("tracking", mapping.BODY, mapping.TRACKING_MAPPINGS),
    )

    def extract(self, ctx: ExtractContext) -> Iterator[Page]:
        return extract.pages(ctx, self.options)
