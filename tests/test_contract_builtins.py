"""The built-in providers run the same contract suite a third-party plugin runs (``shipetl.testing``)."""

from __future__ import annotations

from pathlib import Path

import shipetl_shipengine

from shipetl.testing import ErrorFixture, ProviderContract

SHIPENGINE_FIXTURES = Path(shipetl_shipengine.__file__).parent / "fixtures"
SEED_004_NUMBER = "9405511899223197428490"


class TestShipEngineContract(ProviderContract):
    plugin = shipetl_shipengine
    fixtures = SHIPENGINE_FIXTURES
    routes = {
        "GET /v1/labels?page=1": "labels_page.json",
        f"GET /v1/tracking?carrier_code=stamps_com&tracking_number={SEED_004_NUMBER}": "tracking_usps_seed_004.json",
        "GET /v1/tracking?carrier_code=ups&tracking_number=1ZXXXXXXXXXXXXXXX1": "tracking_ups_current.json",
    }
    errors = {
        "auth": ErrorFixture(401, "error_401.json"),
        "rate_limit": ErrorFixture(429, "error_429.json", {"Retry-After": "1"}),
        "bad_input": ErrorFixture(400, "error_400.json"),
    }
    # USPS scan codes the built-in table does not map yet (providers.md 3.5: "others in_transit").
