"""Pipeline `sources:` blocks the end-to-end tests share (pytest puts this folder on sys.path)."""

from shipetl_shopee.sandbox import PARTNER_ID, PARTNER_KEY, TEST_AUTH_CODE

SHIPENGINE_KEY = "sandbox_live_key"


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
