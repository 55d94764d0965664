"""Pipeline `sources:` blocks the end-to-end tests share (pytest puts this folder on sys.path)."""

from shipetl_aliexpress.sandbox import APP_KEY, APP_SECRET, AUTH_CODE
from shipetl_fuuffy.sandbox import DEFAULT_CLIENTS
from shipetl_shopee.sandbox import PARTNER_ID, PARTNER_KEY, TEST_AUTH_CODE

SHIPENGINE_KEY = "sandbox_live_key"
FUUFFY_CLIENT_ID, FUUFFY_CLIENT_SECRET = next(iter(DEFAULT_CLIENTS.items()))
FUUFFY_PII_KEY = "fuuffy-pii-key-91ab"


def shipengine_source(url: str, key: str = SHIPENGINE_KEY, name: str = "se", **keys: object) -> str:
    """A ShipEngine source against the sandbox at ``url``, fast enough for tests; ``keys``: more source keys."""
    more = "".join(f"      {key_name}: {value}\n" for key_name, value in keys.items())
    return f"""
    - name: {name}
      provider: shipengine
      base_url: {url}/shipengine
      start: 2025-08-01
      rate_limit: {{per_second: 1000, burst: 100, max_in_flight: 16}}
      credentials: {{api_key: "{key}"}}
      options: {{poll_concurrency: 16}}
{more}    """


def shopee_source(url: str, shops, key: str = PARTNER_KEY, auth_code: bool = True) -> str:
    """A Shopee source for ``shops`` against the sandbox at ``url``, PII hashed, linked by the test auth code."""
    code = f", auth_code: {TEST_AUTH_CODE}" if auth_code else ""
    return f"""
    - name: shopee
      provider: shopee
      base_url: {url}/shopee
      start: 2025-08-01
      pii: hash
      rate_limit: {{per_second: 2000, burst: 200, max_in_flight: 16}}
      credentials: {{partner_key: {key}, pii_key: test-pii-key-0123{code}}}
      options: {{partner_id: {PARTNER_ID}, shop_ids: [{", ".join(map(str, shops))}], poll_concurrency: 8}}
    """


def aliexpress_source(url: str, ids_file, *, name: str = "ae", secret: str = APP_SECRET) -> str:
    """An AliExpress source against the sandbox at ``url``, its order ids from the CSV ``ids_file``."""
    return f"""
    - name: {name}
      provider: aliexpress
      base_url: {url}/aliexpress
      rate_limit: {{per_second: 1000, burst: 100, max_in_flight: 8}}
      credentials: {{app_secret: "{secret}", auth_code: "{AUTH_CODE}"}}
      options: {{app_key: "{APP_KEY}", order_ids_file: "{ids_file}", order_ids_column: ae_order_id, poll_concurrency: 8}}
    """


def fuuffy_source(url: str, *, name: str = "fz", secret: str = FUUFFY_CLIENT_SECRET,
                  options: str = "poll_concurrency: 8") -> str:
    """A Fuuffy source against the sandbox at ``url``, PII hashed; ``options``: the body of its options map."""
    return f"""
    - name: {name}
      provider: fuuffy
      base_url: {url}/fuuffy
      start: 2025-10-01
      pii: hash
      rate_limit: {{per_second: 1000, burst: 100, max_in_flight: 8}}
      credentials: {{client_id: "{FUUFFY_CLIENT_ID}", client_secret: "{secret}", pii_key: "{FUUFFY_PII_KEY}"}}
      options: {{{options}}}
    """
