"""A request that reaches something other than the provider's API (a wrong ``base_url``) fails the source with one
line naming the URL, for every built-in provider, where a 404 would otherwise count each record as not found."""

from __future__ import annotations

import httpx
import pytest

from shipetl import NotFoundError, TerminalError
from shipetl_aliexpress.client import classify as aliexpress
from shipetl_fuuffy.client import classify as fuuffy
from shipetl_shipengine.client import classify as shipengine
from shipetl_shopee.client import classify as shopee

ELSEWHERE = [(httpx.Response(404, json={"detail": "Not Found"}), "json"),
             (httpx.Response(404, text="<html>no such page</html>"), "html")]


@pytest.mark.parametrize(("classify", "api", "method", "path"), [
    (aliexpress, "AliExpress", "POST", "/aliexpres/sync"),
    (fuuffy, "Fuuffy", "GET", "/fuufy/v1/order/list"),
    (shipengine, "ShipEngine", "GET", "/shipengin/v1/labels"),
    (shopee, "Shopee", "POST", "/shope/api/v2/auth/access_token/get"),
], ids=["aliexpress", "fuuffy", "shipengine", "shopee"])
@pytest.mark.parametrize("reply", [r for r, _ in ELSEWHERE], ids=[kind for _, kind in ELSEWHERE])
def test_a_404_that_is_not_the_apis_own_error_names_the_url_and_base_url(classify, api, method, path, reply):
    reply.request = httpx.Request(method, f"http://127.0.0.1:8765{path}?page=2&access_token=t0ken")
    with pytest.raises(TerminalError) as info:
        classify(reply)
    assert not isinstance(info.value, NotFoundError)
    assert str(info.value) == (f"{method} http://127.0.0.1:8765{path} answered HTTP 404 with no {api} error body: "
                               f"{api} is not there; check the source's base_url")


def test_the_apis_own_not_found_is_still_a_record_not_found():
    request = httpx.Request("GET", "https://api.shipengine.com/v1/tracking?tracking_number=1Z")
    se = httpx.Response(404, json={"request_id": "r", "errors": [{"error_source": "shipengine", "error_type":
                                                                  "validation", "error_code": "not_found", "message": "no"}]},
                        request=request)
    with pytest.raises(NotFoundError):
        shipengine(se)
    ff = httpx.Response(404, json={"error": {"code": "404000", "message": "Not found"}},
                        request=httpx.Request("GET", "https://api-gateway.fuuffy.com/v1/order?id=1"))
    with pytest.raises(NotFoundError):
        fuuffy(ff)


@pytest.mark.parametrize(("classify", "api", "lacking", "path"), [
    (shipengine, "ShipEngine", "a labels list", "/v1/labels"),
    (shopee, "Shopee", "Shopee's envelope (request_id, response)", "/api/v2/order/get_order_list"),
], ids=["shipengine", "shopee"])
def test_a_success_of_another_api_fails_the_source_instead_of_loading_nothing(classify, api, lacking, path):
    """A base_url at another JSON API answering 200 everywhere: ShipEngine's listing ended empty and Shopee's windows
    held no orders, so the source was `ok` every night with nothing loaded."""
    reply = httpx.Response(200, json={"status": "ok", "data": [1, 2, 3]},
                           request=httpx.Request("GET", f"http://127.0.0.1:8765/other{path}?page=1"))
    with pytest.raises(TerminalError) as info:
        classify(reply)
    assert str(info.value) == (f"GET http://127.0.0.1:8765/other{path} answered HTTP 200 without {lacking}: {api} is not "
                               f"there; check the source's base_url")


def test_the_apis_own_successes_pass():
    labels = httpx.Response(200, json={"labels": [], "total": 0, "page": 1, "pages": 0},
                            request=httpx.Request("GET", "https://api.shipengine.com/v1/labels?page=1"))
    tracking = httpx.Response(200, json={"tracking_number": "1Z", "events": []},
                              request=httpx.Request("GET", "https://api.shipengine.com/v1/tracking?tracking_number=1Z"))
    orders = httpx.Response(200, json={"request_id": "r", "error": "", "message": "", "response": {"order_list": []}},
                            request=httpx.Request("GET", "https://partner.shopeemobile.com/api/v2/order/get_order_list"))
    for classify, reply in ((shipengine, labels), (shipengine, tracking), (shopee, orders)):
        assert classify(reply) is None
