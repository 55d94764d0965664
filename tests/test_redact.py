import orjson
import pytest

from shipetl import redact
from shipetl.redact import MASK, SECRET_KEYS, known_secrets, redact_bytes, redact_obj, redact_text, register_secret


@pytest.fixture(autouse=True)
def clean_registry():
    redact.clear_secrets()
    yield
    redact.clear_secrets()


def test_secret_keys_cover_the_design_list_but_not_code():
    for key in ("access_token", "sign", "partner_key", "authorization", "api-key", "app_secret"):
        assert key in SECRET_KEYS
    assert "code" not in SECRET_KEYS


def test_register_ignores_empty_and_short_values():
    register_secret(None)
    register_secret("")
    register_secret("abc")
    assert known_secrets() == ()
    register_secret("s3cr3t-value")
    assert "s3cr3t-value" in known_secrets()


def test_registered_secret_is_masked_everywhere_in_text():
    register_secret("tok_live_123456")
    assert redact_text("failed with tok_live_123456 and again tok_live_123456") == f"failed with {MASK} and again {MASK}"


def test_url_encoded_form_of_a_secret_is_masked():
    register_secret("a+b/c=d")
    assert redact_text("GET /x?k=a%2Bb%2Fc%3Dd") == f"GET /x?k={MASK}"


def test_secret_query_parameters_are_masked_and_others_kept():
    text = "https://api.example/orders?access_token=abc&x=1&SIGN=deadbeef&code=77&design=blue"
    assert redact_text(text) == f"https://api.example/orders?access_token={MASK}&x=1&SIGN={MASK}&code=77&design=blue"


def test_bearer_token_is_masked():
    assert redact_text("Authorization: Bearer eyJhbGciOi.abc-def") == f"Authorization: Bearer {MASK}"


def test_quoted_secret_keys_in_text_excerpts_are_masked_even_when_cut_off():
    assert redact_text('{"partner_key": "pk-1", "shop_id": 5}') == f'{{"partner_key": "{MASK}", "shop_id": 5}}'
    assert redact_text('{"access_token": "abcd-trunc') == f'{{"access_token": "{MASK}"'


def test_redact_obj_masks_secret_keys_deeply_and_does_not_mutate():
    register_secret("hunter22")
    data = {"Authorization": "Basic xyz", "nested": [{"api_key": 1, "note": "pw hunter22"}], "code": "A1", "token": None}
    out = redact_obj(data)
    assert out == {"Authorization": MASK, "nested": [{"api_key": MASK, "note": f"pw {MASK}"}], "code": "A1", "token": None}
    assert data["Authorization"] == "Basic xyz"
    assert data["nested"][0]["api_key"] == 1


def test_redact_bytes_returns_clean_page_unchanged_and_unparsed():
    body = b'{"orders": [{"id": 1, "code": "x"}], "next": null}   '
    assert redact_bytes(body) is body


def test_redact_bytes_replaces_registered_values_without_parsing():
    register_secret("sk_live_9999")
    body = b'not json at all sk_live_9999 ...'
    assert redact_bytes(body) == b"not json at all *** ..."


def test_redact_bytes_masks_secret_json_keys():
    body = b'{"data": {"access_token": "abc", "refresh_token": "def", "expire_in": 14400}}'
    assert orjson.loads(redact_bytes(body)) == {"data": {"access_token": MASK, "refresh_token": MASK, "expire_in": 14400}}


def test_redact_bytes_masks_query_secret_in_json_string():
    body = b'{"next": "https://x/y?page=2&access_token=abc123"}'
    assert orjson.loads(redact_bytes(body)) == {"next": f"https://x/y?page=2&access_token={MASK}"}


def test_redact_bytes_handles_non_json_with_secret_key():
    assert redact_bytes(b"<html>password=letmein</html>") == b"<html>password=***</html>"


def test_redact_bytes_ignores_key_names_inside_other_words():
    body = b'{"design": "signature tokenised", "session_count": 3, "assign=": 1}'
    assert redact_bytes(body) is body


def test_redact_bytes_sees_secret_key_in_any_case():
    body = b'{"Access_Token": "abc"}'
    assert orjson.loads(redact_bytes(body)) == {"Access_Token": MASK}


def test_redact_bytes_finds_a_secret_key_after_lookalikes_and_inside_longer_keys():
    body = b'{"my_token": "a", "x_access_token": "b", "refresh_token": "c", "q": "u?my_api_key=1&api_key=2"}'
    assert orjson.loads(redact_bytes(body)) == {"my_token": "a", "x_access_token": "b", "refresh_token": MASK,
                                               "q": f"u?my_api_key=1&api_key={MASK}"}


def test_redact_bytes_finds_a_secret_key_next_to_bytes_that_are_not_utf8():
    assert redact_bytes(b"\xff\xfeAPI_KEY=abc123&x=1") == b"\xff\xfeAPI_KEY=***&x=1"
    assert redact_bytes("ค่า\ttoken=abc123".encode()) == "ค่า\ttoken=***".encode()


def test_a_secret_written_json_escaped_is_masked_in_pages_and_text():
    secret = 'k3y/with"quote\\and-é'
    register_secret(secret)
    body = ('{"echo": "' + 'k3y\\/with\\"quote\\\\and-\\u00e9' + '", "plain": "' + 'k3y/with\\"quote\\\\and-é' + '"}').encode()
    masked = redact_bytes(body)
    assert orjson.loads(masked) == {"echo": MASK, "plain": MASK}
    assert secret not in redact_text(f"error: {body.decode()}") and "k3y" not in redact_text(body.decode())
