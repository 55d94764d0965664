"""Pipeline YAML loading: expansion, validation, and errors that point at file, line and key."""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from shipetl import config
from shipetl.config import ConfigError, load, parse_duration, validate_options
from shipetl.errors import ConfigError as BaseConfigError

SECRET = "sk-live-0123456789abcdef"

GOOD = """\
warehouse:
  path: data/wh.duckdb
  memory_limit: 2GB
run:
  max_parallel_sources: 4
sources:
  - name: shipengine-main
    provider: shipengine
    timezone: America/New_York
    start: 2024-01-01
    lookback: 2d
    rate_limit: {per_minute: 100, burst: 5}
    credentials:
      api_key: ${SHIPENGINE_API_KEY}
    options:
      carrier_ids: [se-1, se-2]
  - provider: shopee
    enabled: false
    start: 2024-06-01T08:00:00Z
    credentials:
      partner_id: 12345
      partner_key: ${SHOPEE_KEY:-dev-key}
"""


@pytest.fixture(autouse=True)
def secrets(monkeypatch) -> list[str]:
    """Capture what config registers as secret instead of touching the real registry."""
    from shipetl import redact

    seen: list[str] = []
    monkeypatch.setattr(redact, "register_secret", seen.append)
    return seen


def write(tmp_path: Path, text: str, name: str = "daily.yaml") -> Path:
    path = tmp_path / "pipelines" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, env={} if env is None else env)
    return str(info.value)


def test_good_file_loads(tmp_path, secrets) -> None:
    path = write(tmp_path, GOOD)
    cfg = load(path, env={"SHIPENGINE_API_KEY": SECRET})
    assert cfg.path == path
    assert cfg.warehouse.path == "data/wh.duckdb"
    assert cfg.warehouse.lake == "data/lake"
    assert cfg.warehouse.memory_limit == "2GB"
    assert cfg.warehouse.commit_timeout == 60
    assert cfg.run.max_parallel_sources == 4
    assert cfg.run.expire_after_days == 30
    first, second = cfg.sources
    assert first.name == "shipengine-main"
    assert first.timezone == "America/New_York"
    assert first.start == date(2024, 1, 1)
    assert first.lookback == timedelta(days=2)
    assert first.rate_limit.per_minute == 100 and first.rate_limit.burst == 5
    assert first.rate_limit.model_dump(exclude_none=True) == {"per_minute": 100, "burst": 5}
    assert isinstance(first.credentials["api_key"], SecretStr)
    assert first.secret("api_key") == SECRET
    assert first.options == {"carrier_ids": ["se-1", "se-2"]}
    assert second.name == "shopee"  # defaults to the provider
    assert second.enabled is False
    assert second.start == datetime(2024, 6, 1, 8, tzinfo=timezone.utc)
    assert second.lookback == timedelta(0)
    assert second.rate_limit is None
    assert second.secret("partner_id") == "12345"
    assert second.secret("partner_key") == "dev-key"
    assert set(secrets) == {SECRET, "12345", "dev-key"}
    assert issubclass(ConfigError, BaseConfigError)


def test_minimal_file_gets_defaults(tmp_path) -> None:
    cfg = load(write(tmp_path, "sources:\n  - provider: fuuffy\n"), env={})
    assert cfg.warehouse == config.WarehouseConfig()
    assert cfg.run.max_parallel_sources == 2
    assert cfg.sources[0].name == "fuuffy" and cfg.sources[0].credentials == {}


def test_env_expansion(tmp_path) -> None:
    path = write(
        tmp_path,
        """\
        warehouse:
          path: ${DATA:-data}/wh.duckdb
          lake: $${NOT_A_VAR}/lake
          raw: ${EMPTY:-fallback}/raw
        sources:
          - provider: shipengine
            base_url: http://${HOST}:${PORT:-8080}
            options: {note: "a ${HOST} b", n: 3}
        """,
    )
    cfg = load(path, env={"HOST": "localhost", "EMPTY": ""})
    assert cfg.warehouse.path == "data/wh.duckdb"
    assert cfg.warehouse.lake == "${NOT_A_VAR}/lake"
    assert cfg.warehouse.raw == "fallback/raw"
    assert cfg.sources[0].base_url == "http://localhost:8080"
    assert cfg.sources[0].options == {"note": "a localhost b", "n": 3}


def test_env_defaults_to_os_environ(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHIPENGINE_API_KEY", SECRET)
    cfg = load(write(tmp_path, GOOD))
    assert cfg.sources[0].secret("api_key") == SECRET


def test_unset_variable_names_file_line_and_key(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    message = error_of(path)
    assert message == (
        f"{path}:14: sources[0].credentials.api_key: ${{SHIPENGINE_API_KEY}} is unset; "
        "export it or give a default with ${SHIPENGINE_API_KEY:-...}"
    )


def test_relative_path_is_shown_as_given(tmp_path, monkeypatch) -> None:
    write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^pipelines/daily\.yaml:14: sources\[0\]\.credentials\.api_key: "):
        load("pipelines/daily.yaml", env={})


def test_misspelt_key_suggests_and_has_line(tmp_path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          - provider: shipengine
          - provider: shopee
            lookbak: 2d
            rate_limit: {per_minut: 5}
        runn: {}
        """,
    )
    lines = error_of(path).splitlines()
    assert f"{path}:4: sources[1].lookbak: unknown key; did you mean 'lookback'?" in lines
    assert f"{path}:5: sources[1].rate_limit.per_minut: unknown key; did you mean 'per_minute'?" in lines
    assert f"{path}:6: runn: unknown key; did you mean 'run'?" in lines


def test_wrong_types_all_reported(tmp_path) -> None:
    path = write(
        tmp_path,
        """\
        run:
          max_parallel_sources: many
        sources:
          - provider: shipengine
            lookback: soon
            timezone: Asia/HongKong
            start: someday
            enabled: maybe
            name: Not Valid
            rate_limit:
              per_minute: -1
        """,
    )
    lines = error_of(path).splitlines()
    assert f"{path}:2: run.max_parallel_sources: expected a whole number, got 'many'" in lines
    assert f"{path}:5: sources[0].lookback: expected a duration like '2d' or '6h', got 'soon'" in lines
    assert f"{path}:6: sources[0].timezone: unknown IANA time zone 'Asia/HongKong'; did you mean 'Asia/Hong_Kong'?" in lines
    assert any(line.startswith(f"{path}:7: sources[0].start: expected a date like 2024-01-01") for line in lines)
    assert f"{path}:8: sources[0].enabled: expected true or false, got 'maybe'" in lines
    assert any(line.startswith(f"{path}:9: sources[0].name: ") for line in lines)
    assert any(line.startswith(f"{path}:11: sources[0].rate_limit.per_minute: ") for line in lines)
    assert len(lines) == 7


def test_duplicate_source_names(tmp_path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          - provider: shipengine
          - name: other
            provider: shipengine
          - provider: shipengine
        """,
    )
    assert error_of(path) == (
        f"{path}:5: sources[2]: duplicate source name 'shipengine' (also sources[0]); give each source a unique name"
    )


def test_duplicate_yaml_key(tmp_path) -> None:
    path = write(tmp_path, "sources:\n  - provider: a\n    provider: b\n")
    assert error_of(path) == f"{path}:3: sources[0].provider: duplicate key"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "{path}: the file is empty"),
        ("# only a comment\n", "{path}: the file is empty"),
        ("- a\n- b\n", "{path}:1: expected a mapping with a 'sources:' list, got a list"),
        ("sources:\n  - provider: a\n   bad: [\n", "{path}:3: invalid YAML"),
        ("sources: []\n", "{path}:1: sources: needs at least one source"),
        ("run: {}\n", "{path}: sources: required key is missing"),
        ("sources:\n  - enabled: true\n", "{path}:2: sources[0].provider: required key is missing"),
        ("sources:\n  - provider: a\n    base_url: ${BAD NAME}\n", "{path}:3: sources[0].base_url: ${{BAD NAME}} is not a valid reference"),
    ],
)
def test_clear_errors(tmp_path, text, expected) -> None:
    path = write(tmp_path, text)
    assert error_of(path).startswith(expected.format(path=path))


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load(path)


def test_secrets_masked_and_never_in_errors(tmp_path, secrets) -> None:
    path = write(tmp_path, GOOD)
    cfg = load(path, env={"SHIPENGINE_API_KEY": SECRET})
    data = cfg.redacted_dict()
    assert data["sources"][0]["credentials"] == {"api_key": "***"}
    assert data["sources"][1]["credentials"] == {"partner_id": "***", "partner_key": "***"}
    assert data["sources"][0]["lookback"] == "2d"
    assert data["sources"][0]["start"] == "2024-01-01"
    assert SECRET not in repr(data) and SECRET not in repr(cfg) and SECRET not in str(cfg.sources[0])

    bad = write(
        tmp_path,
        f"""\
        sources:
          - provider: shipengine
            credentials:
              api_key: {{nested: {SECRET}}}
              token: ${{TOKEN}}
            lookback: {SECRET}
        """,
        name="bad.yaml",
    )
    message = error_of(bad, env={"TOKEN": SECRET})
    assert "sources[0].credentials.api_key: expected a string" in message
    assert SECRET not in message
    assert SECRET in secrets  # registered before validation, so redaction masks it everywhere


def test_secret_lookup_errors(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    src = load(path, env={"SHIPENGINE_API_KEY": ""}).sources[0]
    with pytest.raises(ConfigError, match=r"daily\.yaml:7: sources\[0\]\.credentials\.api_key: is empty"):
        src.secret("api_key")
    with pytest.raises(ConfigError, match=r"daily\.yaml:7: sources\[0\]\.credentials\.api_secret: missing"):
        src.secret("api_secret")


class ShipEngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier_ids: list[str]
    page_size: int = 100


def test_validate_options(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    cfg = load(path, env={"SHIPENGINE_API_KEY": SECRET})
    options = validate_options(cfg, cfg.sources[0], ShipEngineOptions)
    assert options == ShipEngineOptions(carrier_ids=["se-1", "se-2"])


def test_validate_options_error_path(tmp_path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          - provider: fuuffy
          - provider: shipengine
            options:
              carrier_id: [se-1]
              page_size: big
        """,
    )
    cfg = load(path, env={})
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, cfg.sources[1], ShipEngineOptions)
    lines = str(info.value).splitlines()
    assert f"{path}:5: sources[1].options.carrier_id: unknown key; did you mean 'carrier_ids'?" in lines
    assert f"{path}:6: sources[1].options.page_size: expected a whole number, got 'big'" in lines
    assert f"{path}:4: sources[1].options.carrier_ids: required key is missing" in lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("6h", timedelta(hours=6)),
     ("2d", timedelta(days=2)), ("1w", timedelta(weeks=1)), ("0s", timedelta(0))],
)
def test_parse_duration(text, expected) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(config.format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["soon", "2", "2 days", "-1d", "1.5h", ""])
def test_parse_duration_rejects(text) -> None:
    with pytest.raises(ValueError, match="expected a duration like '2d' or '6h'"):
        parse_duration(text)
