"""The raw zone: layout, rotation, bodies kept as received, secrets never written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import zstandard

from shipetl import redact
from shipetl.provider import Page
from shipetl.rawzone import RawZoneWriter, page_line, prune, safe_name

STARTED = datetime(2025, 3, 4, 23, 59, tzinfo=UTC)


def read_lines(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        data = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    assert data.endswith(b"\n")
    return data.splitlines(keepends=True)


def all_bytes(root: Path) -> bytes:
    return b"".join(line for p in sorted(root.rglob("*.zst")) for line in read_lines(p))


def test_layout(tmp_path) -> None:
    with RawZoneWriter(tmp_path, "shopee", "shop/8812 ü", "20250304T235900Z-abc123", STARTED) as raw:
        raw.write(Page("orders", {"a": 1}))
        raw.write(Page("order detail", {"b": 2}))
        files = raw.close()
    base = tmp_path / "shopee" / "shop_8812_" / "2025-03-04" / "20250304T235900Z-abc123"
    assert files == {"orders": [base / "orders-00001.ndjson.zst"], "order detail": [base / "order_detail-00001.ndjson.zst"]}
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.zst")) == sorted(
        p.relative_to(tmp_path) for fs in files.values() for p in fs)
    assert raw.pages == 2


def test_line_shape_and_meta(tmp_path) -> None:
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", {"x": [1, 2]}, meta={"carrier_code": "usps", 3: "three"}))
        raw.write(Page("s", None))
        files = raw.close()
    first, second = read_lines(files["s"][0])
    assert orjson.loads(first) == {"meta": {"carrier_code": "usps", "3": "three"}, "body": {"x": [1, 2]}}
    assert orjson.loads(second) == {"meta": {}, "body": None}


def test_safe_name() -> None:
    assert safe_name("shop-8812_a.b=c") == "shop-8812_a.b=c"
    assert safe_name("../../etc/passwd") == ".._.._etc_passwd"
    assert safe_name("") == "_"


def test_rotation_keeps_every_page_in_order(tmp_path) -> None:
    closed: list[tuple[str, Path, int]] = []
    pages = [{"n": i, "pad": "x" * 50} for i in range(20)]
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED, rotate_bytes=250,
                       on_close=lambda s, p: closed.append((s, p, len(read_lines(p))))) as raw:
        for i, body in enumerate(pages):
            raw.write(Page("s", body))
            if i % 3 == 0:
                raw.write(Page("t", {"other": i}))
        files = raw.close()
    assert len(files["s"]) > 3
    assert [p.name for p in files["s"]] == [f"s-{i:05d}.ndjson.zst" for i in range(1, len(files["s"]) + 1)]
    got = [orjson.loads(line)["body"] for p in files["s"] for line in read_lines(p)]
    assert got == pages
    assert [orjson.loads(line)["body"]["other"] for p in files["t"] for line in read_lines(p)] == list(range(0, 20, 3))
    for p in files["s"][:-1]:
        size = sum(len(line) for line in read_lines(p))
        assert 250 <= size < 250 + 100
    # every file handed to on_close exactly once, complete, as soon as it closed
    assert sorted(p for _, p, _ in closed) == sorted(p for fs in files.values() for p in fs)
    assert all(n == len(read_lines(p)) for _, p, n in closed)


def test_bytes_body_kept_byte_for_byte(tmp_path) -> None:
    body = b'{"b": 1.50, "a":"caf\\u00e9",  "big": 12345678901234567890123}'
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", body))
        raw.write(Page("s", bytearray(b"  [1, 2]\n")))
        files = raw.close()
    first, second = read_lines(files["s"][0])
    assert first == b'{"meta":{},"body":' + body + b"}\n"
    assert second == b'{"meta":{},"body":[1, 2]}\n'


def test_multiline_bytes_body_becomes_one_line(tmp_path) -> None:
    body = b'{\n  "a": "x",\r\n  "list": [\n    1,\n    2\n  ]\n}\n'
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", body))
        raw.write(Page("s", {"next": True}))
        files = raw.close()
    first, second = read_lines(files["s"][0])
    assert orjson.loads(first)["body"] == {"a": "x", "list": [1, 2]}
    assert orjson.loads(second)["body"] == {"next": True}


def test_empty_bytes_body_is_null() -> None:
    assert orjson.loads(page_line(Page("s", b"  "))) == {"meta": {}, "body": None}


def test_registered_secret_never_written(tmp_path) -> None:
    secret = "sk-live-0123456789abcdef"
    redact.register_secret(secret)
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", {"note": f"key {secret} in text"}, meta={"url": f"/v1/x?k={secret}"}))
        raw.write(Page("s", f'{{"echo": "{secret}"}}'.encode()))
        raw.write(Page("s", {"nested": [{"deep": secret}]}))
        files = raw.close()
    data = all_bytes(tmp_path)
    assert secret.encode() not in data
    assert data.count(b"***") >= 4
    assert [orjson.loads(line)["body"] for line in read_lines(files["s"][0])][1] == {"echo": "***"}


def test_url_encoded_secret_never_written(tmp_path) -> None:
    secret = "abc/def+ghi=="
    redact.register_secret(secret)
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", {"next": "https://x.example/api?cursor=1&k=abc%2Fdef%2Bghi%3D%3D"}))
    assert b"abc%2Fdef%2Bghi%3D%3D" not in all_bytes(tmp_path)


def decompressed(root: Path) -> bytes:
    """Every file's text, without assuming it is well-formed NDJSON."""
    out = b""
    for p in sorted(root.rglob("*.zst")):
        with open(p, "rb") as fh:
            out += zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    return out


def test_secret_keys_masked(tmp_path) -> None:
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("token", {"access_token": "tok-4f2a9c0e7b", "refresh_token": "rt-77aa31", "expire_in": 14400}))
        raw.write(Page("token", b'{"request_id": "x1", "access_token": "tok-bytes-99d1", "expire_in": 14400}'))
        raw.write(Page("token", {"data": {"partner_key": "pk-secret-1", "shop_id": 8812}}))
    data = decompressed(tmp_path)
    for value in (b"tok-4f2a9c0e7b", b"rt-77aa31", b"tok-bytes-99d1", b"pk-secret-1"):
        assert value not in data
    assert data.count(b'"access_token":"***"') == 2
    assert b'"refresh_token":"***"' in data and b'"partner_key":"***"' in data
    assert b'"expire_in":14400' in data and b'"shop_id":8812' in data


def test_page_with_a_secret_key_stays_one_line(tmp_path) -> None:
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", {"access_token": "tok-4f2a9c0e7b", "n": 1}))
        raw.write(Page("s", {"n": 2}))
        raw.write(Page("s", b'{"sign": null, "n": 3}'))
        raw.write(Page("s", {"n": 4}))
        files = raw.close()
    lines = read_lines(files["s"][0])
    assert [orjson.loads(line)["body"]["n"] for line in lines] == [1, 2, 3, 4]
    assert orjson.loads(lines[0])["body"]["access_token"] == "***"


def test_pages_without_secrets_are_untouched(tmp_path) -> None:
    body = b'{"design": "token bucket", "my_token": "visible", "sign_up": 1}'
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", body))
        files = raw.close()
    assert read_lines(files["s"][0]) == [b'{"meta":{},"body":' + body + b"}\n"]


def test_close_twice_and_no_pages(tmp_path) -> None:
    raw = RawZoneWriter(tmp_path, "p", "a", "r", STARTED)
    assert raw.close() == {}
    assert not (tmp_path / "p").exists()
    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED) as raw:
        raw.write(Page("s", {}))
        first = raw.close()
    assert raw.close() == first
    assert len(read_lines(first["s"][0])) == 1


def test_file_is_valid_zstd_ndjson_for_duckdb(tmp_path) -> None:
    import duckdb

    with RawZoneWriter(tmp_path, "p", "a", "r", STARTED, rotate_bytes=64) as raw:
        for i in range(5):
            raw.write(Page("s", f'{{"n": {i}}}'.encode(), meta={"i": i}))
        files = raw.close()
    con = duckdb.connect()
    got = [r[0] for p in files["s"] for r in con.execute(
        "SELECT body->>'n' FROM read_json(?, format='newline_delimited', columns={'meta': 'JSON', 'body': 'JSON'}, "
        "compression='zstd')", [str(p)]).fetchall()]
    assert got == ["0", "1", "2", "3", "4"]


def test_prune_deletes_only_this_accounts_older_run_days(tmp_path) -> None:
    for account, day in [("shop-1", datetime(2025, 3, 1, tzinfo=UTC)), ("shop-1", STARTED), ("shop-2", datetime(2025, 3, 1, tzinfo=UTC))]:
        with RawZoneWriter(tmp_path, "shopee", account, "r-" + day.strftime("%d"), day) as raw:
            raw.write(Page("orders", {"a": 1}))
    (tmp_path / "shopee" / "shop-1" / "notes").mkdir()  # not a run day: left alone
    assert prune(tmp_path, "shopee", "shop-1", before=STARTED.date()) == 1
    assert sorted(p.name for p in (tmp_path / "shopee" / "shop-1").iterdir()) == ["2025-03-04", "notes"]
    assert (tmp_path / "shopee" / "shop-2" / "2025-03-01").is_dir()
    assert prune(tmp_path, "shopee", "no-such-account", before=STARTED.date()) == 0
