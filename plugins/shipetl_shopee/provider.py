"""The Shopee provider: its name, its config fields, its streams, and how one shop's run is wired."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from shipetl import ConfigError, ExtractContext, Page, Provider, RateLimit, Stream, TokenStore, http_client

from . import extract, mapping, statuses
from .client import LIVE_BASE_URL, ShopeeApi
from .tokens import ShopTokens

ACCOUNT_PREFIX = "shop-"


class ShopeeOptions(BaseModel):
    """``options:`` of a shopee source."""

    model_config = ConfigDict(extra="forbid")
    shop_ids: list[int] = Field(min_length=1, description="Shops of this partner app; each is its own account "
                                                          "(shop-<id>) with its own tokens, cursor and run record")
    partner_id: int | None = Field(None, description="The app's partner_id; not a secret (it is in every URL), "
                                                     "else credentials.partner_id")
    page_size: int = Field(100, ge=1, le=100, description="Orders per get_order_list page")
    poll_concurrency: int = Field(8, ge=1, le=64, description="Tracking requests in flight at once, per shop")
    redirect_url: str = Field("https://localhost/shipetl/shopee-authorized",
                              description="Where Shopee sends the seller after authorizing (shipetl auth)")


def shop_id_of(account_id: str) -> int:
    """``shop-12345`` -> 12345."""
    return int(account_id.removeprefix(ACCOUNT_PREFIX))


def _optional_secret(read: Callable[[str], str], name: str) -> str | None:
    try:
        return read(name)
    except ConfigError:
        return None


class ShopeeProvider(Provider):
    """Orders, their lines, packages and scans of one or more Shopee shops (Open Platform v2); one rate limit per shop."""

    name = "shopee"
    default_base_url = LIVE_BASE_URL
    # Shopee publishes no number; 5 requests a second per shop is the documented default (providers.md 1.5, 5).
    default_rate_limit = RateLimit(per_second=5, burst=5, max_in_flight=8)
    options_model = ShopeeOptions
    secrets = ("partner_key", "auth_code")
    required_secrets = ("partner_key",)
    order_states = statuses.ORDER_STATES
    streams = (
        Stream("order_list", mapping.ORDER_LIST_BODY),
        Stream("order_detail", mapping.ORDER_DETAIL_BODY, mapping.DETAIL_MAPPINGS),
        Stream("tracking", mapping.TRACKING_BODY, mapping.TRACKING_MAPPINGS),
    )

    def accounts(self) -> list[str]:
        return [f"{ACCOUNT_PREFIX}{shop_id}" for shop_id in self.options.shop_ids]

    def check_source(self, source) -> None:
        super().check_source(source)
        try:
            self.partner_id(source.secret)
        except ConfigError:
            raise source.problem("options.partner_id", "missing; the integer id of the Shopee Open Platform app") from None

    def partner_id(self, read_secret: Callable[[str], str]) -> int:
        """From ``options.partner_id``, else ``credentials.partner_id``."""
        if self.options.partner_id is not None:
            return self.options.partner_id
        value = _optional_secret(read_secret, "partner_id")
        if value is None or not value.strip().isdigit():
            raise ConfigError(f"source {self.source_name}: options.partner_id (an integer) is missing")
        return int(value)

    def extract(self, ctx: ExtractContext) -> Iterator[Page]:
        partner_id = self.partner_id(ctx.secret)
        shop_id = shop_id_of(ctx.account_id)
        partner_key = ctx.secret("partner_key")

        def http_for(classify):
            return ctx.http(classify=classify)  # the shop's own limiter: its budget is its own

        auth_api = ShopeeApi(http_for, partner_id, partner_key, shop_id)
        tokens = ShopTokens(ctx.tokens, auth_api, relink=ctx.auth_command, account=ctx.account_id, shop_id=shop_id,
                            auth_code=_optional_secret(ctx.secret, "auth_code"), log=ctx.log)
        api = ShopeeApi(http_for, partner_id, partner_key, shop_id, tokens)
        try:
            yield from extract.pages(ctx, api, self.options.page_size, self.options.poll_concurrency)
        finally:
            api.close()
            auth_api.close()

    def authorize(self, source: Any, tokens: TokenStore, ask: Callable[[str], str], accounts: Sequence[str]) -> list[str]:
        """Link each shop of ``accounts``: print a signed authorization link, read back the redirect URL (or
        its code), exchange the code for the first token pair and store it."""
        partner_id = self.partner_id(source.secret)
        partner_key = source.secret("partner_key")
        base_url = (source.base_url or self.default_base_url).rstrip("/")
        done = []
        for shop_id in map(shop_id_of, accounts):
            api = ShopeeApi(lambda classify: http_client(base_url=base_url, source=f"{source.name}/auth",
                                                         classify=classify), partner_id, partner_key, shop_id)
            try:
                link = api.authorization_link(base_url, self.options.redirect_url)
                pasted = ask(f"shop {shop_id}: open this link, log in as shop {shop_id} and authorize the app:\n"
                             f"{link}\nthen paste the address you were sent to (or just its code)")
                code, linked_shop = parse_redirect(pasted)
                if linked_shop is not None and linked_shop != shop_id:
                    raise ConfigError(f"the address you pasted authorizes shop {linked_shop}, not shop {shop_id}")
                account = f"{ACCOUNT_PREFIX}{shop_id}"
                pair = ShopTokens(tokens, api, relink=source.auth_command(account), account=account,
                                  shop_id=shop_id).link(code)
            finally:
                api.close()
            done.append(f"shop {shop_id}: linked; token pair stored (access token valid until "
                        f"{pair.access_expires_at:%Y-%m-%d %H:%M} UTC, renewed automatically)")
        return done


def parse_redirect(text: str) -> tuple[str, int | None]:
    """(code, shop_id) from a pasted redirect URL, or (text, None) when only the code was pasted."""
    text = text.strip()
    if "code=" not in text:
        if not text:
            raise ConfigError("no code given")
        return text, None
    query = parse_qs(urlsplit(text).query or text.split("?", 1)[-1])
    code = (query.get("code") or [""])[0]
    if not code:
        raise ConfigError("the address you pasted has no code")
    shop = (query.get("shop_id") or [None])[0]
    return code, int(shop) if shop and shop.isdigit() else None
