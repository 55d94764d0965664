"""The ShipEngine provider: its name, its options, its streams."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from shipetl import ExtractContext, Page, Provider, RateLimit, Stream

from . import extract, mapping


class ShipEngineOptions(BaseModel):
    """``options:`` of a shipengine source."""

    model_config = ConfigDict(extra="forbid")
    account_id: str | None = Field(None, description="Name of the ShipEngine account in the warehouse (default: the source name)")
    page_size: int = Field(25, ge=1, le=500, description="Labels per page when discovering shipments (ShipEngine's own "
                           "default; its maximum is not published)")
    poll_concurrency: int = Field(8, ge=1, le=64, description="Tracking requests in flight at once")
    on_behalf_of: str | None = Field(None, description="Partner accounts: the On-Behalf-Of account id")


class ShipEngineProvider(Provider):
    """Labels from ``GET /v1/labels``, their tracking from ``GET /v1/tracking``; a test key (``TEST_...``) gets 20
    requests a minute."""

    name = "shipengine"
    default_base_url = "https://api.shipengine.com"
    default_rate_limit = RateLimit(per_minute=200, burst=10)
    options_model = ShipEngineOptions
    secrets = ("api_key",)
    required_secrets = ("api_key",)
    pii_key_optional = True  # the signer's and company's names, in extras only
    streams = (
        Stream("labels", mapping.LABELS_BODY),
        Stream("tracking", mapping.TRACKING_BODY, mapping.TRACKING_MAPPINGS),
    )

    def extract(self, ctx: ExtractContext) -> Iterator[Page]:
        return extract.pages(ctx, self.options)
