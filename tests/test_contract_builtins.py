"""The built-in providers run the same contract suite a third-party plugin runs (``shipetl.testing``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
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
    failing_poll = ("GET /v1/tracking?carrier_code=ups&tracking_number=1ZXXXXXXXXXXXXXXX1", "1ZXXXXXXXXXXXXXXX1")
    errors = {
        "auth": ErrorFixture(401, "error_401.json"),
        "rate_limit": ErrorFixture(429, "error_429.json", {"Retry-After": "1"}),
        "bad_input": ErrorFixture(400, "error_400.json"),
    }


def _harvest_with_unknown_code(code: str) -> SimpleNamespace:
    """What a harvest looks like when one raw code reached no status table."""
    events = pa.table({"status": ["unknown", "delivered"], "status_raw": [code, "DE"]})
    return SimpleNamespace(result=SimpleNamespace(unmapped=Counter({("tracking_events", code): 1})),
                           tables={"tracking_events": events})


def test_an_unmapped_code_fails_the_contract_unless_allow_unknown_lists_it() -> None:
    class Strict(ProviderContract):
        pass

    class Documented(ProviderContract):
        allow_unknown = frozenset({"ZZ"})

    with pytest.raises(AssertionError, match="tracking_events:ZZ.*allow_unknown"):
        Strict().test_statuses_are_canonical_and_mapped(_harvest_with_unknown_code("ZZ"))
    Documented().test_statuses_are_canonical_and_mapped(_harvest_with_unknown_code("ZZ"))
    with pytest.raises(AssertionError, match="tracking_events:YY"):
        Documented().test_statuses_are_canonical_and_mapped(_harvest_with_unknown_code("YY"))
