"""A sandbox fault aimed at chosen requests of an in-process run (pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from shipetl import context
from shipetl.sandbox.faults import FAULT_HEADER


def fault_requests(monkeypatch: pytest.MonkeyPatch, hit: Callable[[httpx.Request], bool], fault: str = "500") -> None:
    """Until ``monkeypatch`` is undone, the runs of this process send the sandbox's fault header on the requests
    ``hit`` picks, so the sandbox answers each of those (every retry included) with ``fault`` and the rest as usual."""
    network, build = httpx.HTTPTransport(), context.http_client

    def send(request: httpx.Request) -> httpx.Response:
        if hit(request):
            request.headers[FAULT_HEADER] = fault
        return network.handle_request(request)

    monkeypatch.setattr(context, "http_client", lambda **kwargs: build(**kwargs, transport=httpx.MockTransport(send)))
