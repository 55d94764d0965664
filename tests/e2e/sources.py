"""Pipeline `sources:` blocks the end-to-end tests share (pytest puts this folder on sys.path)."""

SHIPENGINE_KEY = "sandbox_live_key"


def shipengine_source(url: str, key: str = SHIPENGINE_KEY, name: str = "se") -> str:
    """A ShipEngine source against the sandbox at ``url``, fast enough for tests."""
    return f"""
    - name: {name}
      provider: shipengine
      base_url: {url}/shipengine
      start: 2025-08-01
      rate_limit: {{per_second: 1000, burst: 100, max_in_flight: 16}}
      credentials: {{api_key: "{key}"}}
      options: {{poll_concurrency: 16}}
    """
