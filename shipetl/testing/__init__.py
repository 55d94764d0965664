"""The provider contract suite, shipped to plugin authors: the checks every provider must pass.

Subclass :class:`ProviderContract` in your plugin's tests and point it at your plugin module and its
captured-shape JSON fixtures; pytest then runs every ``test_*`` method of the contract::

    from pathlib import Path
    import shipetl_dhl
    from shipetl.testing import ErrorFixture, ProviderContract

    class TestDhlContract(ProviderContract):
        plugin = shipetl_dhl
        fixtures = Path(shipetl_dhl.__file__).parent / "fixtures"
        routes = {"GET /v1/shipments?page=1": "shipments_page_1.json",
                  "GET /v1/shipments?page=2": "shipments_last_page.json"}
        errors = {"auth": ErrorFixture(401, "error_401.json"),
                  "rate_limit": ErrorFixture(429, "error_429.json", {"Retry-After": "1"}),
                  "bad_input": ErrorFixture(400, "error_400.json")}

The provider's ``extract`` runs against an ``httpx.MockTransport`` that answers each request from the
fixture named by its route (or against a live loopback server: override :meth:`contract_base_url`);
its pages go through the real raw zone and the real transform. Checked: the plugin loads through the
hooks; every request stays under the configured ``base_url``; paging ends; every table has every
canonical column with its canonical Arrow type; instants are UTC and do not depend on the session time
zone; statuses are in the vocabulary and raw codes are mapped; ``event_id``s and snapshot hashes are
stable; every cursor the extract takes its window from is set; a second run, started from the cursors,
open shipments and warehouse the first run's commit left, adds nothing; every fixture route that answers
without an error is requested by one of the two runs; rows equal ``expected_<table>.json``, one for each
table the fixtures fill; auth, rate-limit and bad-input replies raise ``AuthError``, ``TransientError`` and
``TerminalError``; no credential reaches logs, stdout, the raw zone, rows or error messages.

The kit is split by job: ``transport`` (fixture replies by route, request recording), ``context`` (the
ExtractContext an extract runs in, and what it yields) and ``contract`` (the checks). This module is
what a plugin imports, and the pytest plugin its ``conftest.py`` names.
"""

from __future__ import annotations

from .context import ContractContext, Harvest, Rerun
from .contract import ProviderContract
from .transport import ErrorFixture, FixtureTransport, Reply

__all__ = ["ContractContext", "ErrorFixture", "FixtureTransport", "Harvest", "ProviderContract", "Reply", "Rerun"]


def pytest_report_header(config) -> str:
    """With ``pytest_plugins = ["shipetl.testing"]``, a plugin's test log says what it was checked against."""
    from .. import __version__
    from ..hookspecs import API_VERSION

    return f"shipetl {__version__}, hook API version {API_VERSION}, provider contract suite"
