import io
import json
import re

import pytest
import structlog

from shipetl import log, redact


@pytest.fixture(autouse=True)
def clean():
    redact.clear_secrets()
    yield
    redact.clear_secrets()
    structlog.reset_defaults()


def test_json_lines_have_utc_timestamp_level_event_and_bound_keys():
    stream = io.StringIO()
    log.configure("json", stream=stream)
    log.get_logger(source="shopee/shop-1").info("page_fetched", rows=50)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert list(record)[:3] == ["timestamp", "level", "event"]
    assert record["level"] == "info" and record["event"] == "page_fetched"
    assert record["source"] == "shopee/shop-1" and record["rows"] == 50
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", record["timestamp"])


def test_registered_secret_never_reaches_json_logs():
    stream = io.StringIO()
    log.configure("json", stream=stream)
    redact.register_secret("pk_super_secret_42")
    logger = log.get_logger()
    logger.info("token_refreshed", note="used pk_super_secret_42", partner_key="anything", url="/a?sign=abcd&x=1")
    try:
        raise ValueError("bad key pk_super_secret_42")
    except ValueError:
        logger.exception("refresh_failed")
    out = stream.getvalue()
    assert "pk_super_secret_42" not in out
    assert "anything" not in out and "abcd" not in out
    first = json.loads(out.splitlines()[0])
    assert first["partner_key"] == "***" and first["url"] == "/a?sign=***&x=1"
    assert "ValueError" in json.loads(out.splitlines()[1])["exception"]


def test_level_filtering_and_reconfigure():
    first = io.StringIO()
    log.configure("json", level="warning", stream=first)
    logger = log.get_logger()
    logger.info("ignored")
    logger.warning("kept")
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["kept"]
    second = io.StringIO()
    log.configure("json", level="debug", stream=second)
    logger.debug("now_visible")  # a logger made before reconfigure follows the new settings
    assert "now_visible" in second.getvalue() and "now_visible" not in first.getvalue()


def test_auto_uses_json_off_a_tty_and_console_has_no_secret():
    stream = io.StringIO()
    log.configure("auto", stream=stream)
    log.get_logger().info("hello")
    json.loads(stream.getvalue())
    console = io.StringIO()
    redact.register_secret("console-secret-1")
    log.configure("console", stream=console)
    log.get_logger().info("hello", detail="console-secret-1")
    text = console.getvalue()
    assert "hello" in text and "console-secret-1" not in text and "\x1b[" not in text


def test_default_stream_is_stderr(capsys):
    log.configure("json")
    log.get_logger().info("to_stderr")
    captured = capsys.readouterr()
    assert "to_stderr" in captured.err and captured.out == ""


def test_bad_format_or_level_is_rejected():
    with pytest.raises(ValueError, match="log format"):
        log.configure("xml")
    with pytest.raises(ValueError, match="log level"):
        log.configure("json", level="loud")


def test_current_format_is_what_auto_resolved_to():
    log.configure("auto", stream=io.StringIO())  # not a terminal
    assert log.current_format() == "json"
    log.configure("console", stream=io.StringIO())
    assert log.current_format() == "console"
