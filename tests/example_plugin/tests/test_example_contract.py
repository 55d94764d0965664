"""shipetl-example's own tests: the shipetl contract over its fixtures and over its loopback server."""

from pathlib import Path

import pytest

import shipetl_example
from shipetl.sandbox import SandboxSettings, running_sandbox
from shipetl.testing import ErrorFixture, ProviderContract
from shipetl_example.server import create_app


class TestExampleContract(ProviderContract):
    plugin = shipetl_example
    fixtures = Path(shipetl_example.__file__).parent / "fixtures"
    routes = {"GET /v2/parcels": "parcels_first.json", "GET /v2/parcels?after=p2": "parcels_last.json"}
    errors = {"auth": ErrorFixture(401, "error_401.json"), "rate_limit": ErrorFixture(429, "error_429.json"),
              "bad_input": ErrorFixture(400, "error_400.json")}


class TestExampleAgainstServer(TestExampleContract):
    credentials = {"token": "example-token"}

    @pytest.fixture(scope="class")
    @classmethod
    def contract_base_url(cls):
        with running_sandbox({"example": create_app}, SandboxSettings(port=0)) as url:
            yield f"{url}/example"
