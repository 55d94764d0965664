"""The AliExpress dropshipping provider: its name, its options, its streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shipetl import ExtractContext, Page, Provider, RateLimit, Stream

from . import extract, mapping, statuses

CanonicalNodeStatus = Literal["info_received", "in_transit", "out_for_delivery", "failed_attempt",
                              "available_for_pickup", "delivered", "exception", "returned"]


class AliExpressOptions(BaseModel):
    """``options:`` of an aliexpress source. Order ids come from at least one of the three ``order_ids*`` keys."""

    model_config = ConfigDict(extra="forbid")
    account_id: str | None = Field(None, description="Name of the seller account in the warehouse (default: the source name)")
    app_key: str | None = Field(None, description="The app's key (public, sent in every request); credentials.app_key also works")
    order_ids: list[str] = Field(default_factory=list, description="AliExpress order ids to follow")
    order_ids_file: Path | None = Field(None, description="File of order ids: one a line, or a CSV (see order_ids_column); a relative path is taken from the pipeline file's folder")
    order_ids_column: str | None = Field(None, description="Read order_ids_file as CSV with a header and take this column")
    order_ids_sql: str | None = Field(None, description="Read-only query over the warehouse whose first column is order ids")
    language: str = Field("en_US", description="language of tracking texts (the API requires one)")
    poll_concurrency: int = Field(4, ge=1, le=32, description="Orders fetched at once")
    unmatched_node_status: CanonicalNodeStatus | None = Field(
        "in_transit", description="Status of a tracking node no keyword matches; null leaves it unknown and counted")

    @field_validator("app_key", mode="before")
    @classmethod
    def _key_as_text(cls, value):
        return None if value is None else str(value)

    @field_validator("order_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value):
        # YAML reads 8190123456789012 as a number; ids are text everywhere in the warehouse.
        return [str(v).strip() for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _some_ids(self):
        if not (self.order_ids or self.order_ids_file or self.order_ids_sql):
            raise ValueError("give order_ids, order_ids_file or order_ids_sql: AliExpress has no API listing "
                             "dropshipping orders, so the ids must come from you")
        if self.order_ids_column and not self.order_ids_file:
            raise ValueError("order_ids_column needs order_ids_file")
        return self


class AliExpressProvider(Provider):
    """Orders from ``aliexpress.trade.ds.order.get``, parcels and scans from ``aliexpress.ds.order.tracking.get``;
    one rate limit per app key.

    ``gmt_create`` has no zone; AliExpress states its order filters in Pacific time, so the default zone
    is ``America/Los_Angeles`` (providers.md 2.6, UNCONFIRMED); ``timezone: Etc/GMT+8`` selects a fixed -08:00.
    """

    name = "aliexpress"
    default_base_url = "https://api-sg.aliexpress.com"
    default_timezone = "America/Los_Angeles"
    # No quota is published; 2 requests a second per app key is the documented default (providers.md 5).
    default_rate_limit = RateLimit(per_second=2, burst=2)
    options_model = AliExpressOptions
    # app_key belongs in options: every credential is masked wherever it appears, and a 6-8 digit key
    # would mask matching digits inside timestamps and ids of the raw pages.
    secrets = ("app_secret", "auth_code")
    required_secrets = ("app_secret",)
    order_states = statuses.ORDER_STATES
    streams = (
        Stream("orders", mapping.ORDER_BODY, mapping.ORDER_MAPPINGS),
        Stream("tracking", mapping.TRACKING_BODY, mapping.TRACKING_MAPPINGS),
    )

    def check_source(self, source) -> None:
        super().check_source(source)
        if not self.options.app_key and not source.credentials.get("app_key"):
            raise source.problem("options.app_key", "missing; the app key from the AliExpress Open Platform console")
        ids_file = self.options.order_ids_file
        if ids_file is not None and not Path(ids_file).is_file():
            raise source.problem("options.order_ids_file", f"no file {ids_file}; write the order ids there, one a line "
                                 "(or point it at the file your order export writes)")

    def extract(self, ctx: ExtractContext) -> Iterator[Page]:
        return extract.pages(ctx, self.options)
