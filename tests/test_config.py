"""Pipeline YAML loading: expansion, validation, and errors that point at file, line and key."""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from shipetl import Provider, config
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
    assert cfg.warehouse.path == str(path.parent / "data" / "wh.duckdb")  # from the file's folder
    assert cfg.warehouse.lake == str(path.parent / "data" / "lake")  # beside the warehouse file
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
    path = write(tmp_path, "sources:\n  - provider: fuuffy\n")
    cfg = load(path, env={})
    data = path.parent / "data"
    assert cfg.warehouse == config.WarehouseConfig(path=str(data / "warehouse.duckdb"), lake=str(data / "lake"),
                                                   raw=str(data / "raw"), tokens=str(data / "tokens"))
    assert cfg.run.max_parallel_sources == 2
    assert cfg.sources[0].name == "fuuffy" and cfg.sources[0].credentials == {}
    assert cfg.sources[0].max_open_polls is None


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
    assert cfg.warehouse.path == str(path.parent / "data/wh.duckdb")
    assert cfg.warehouse.lake == str(path.parent / "${NOT_A_VAR}/lake")
    assert cfg.warehouse.raw == str(path.parent / "fallback/raw")
    assert cfg.sources[0].base_url == "http://localhost:8080"
    assert cfg.sources[0].options == {"note": "a localhost b", "n": 3}


def test_env_defaults_to_os_environ(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHIPENGINE_API_KEY", SECRET)
    cfg = load(write(tmp_path, GOOD))
    assert cfg.sources[0].secret("api_key") == SECRET


def test_unset_variable_names_file_line_and_key(tmp_path) -> None:
    """An unset variable inside a source is that source's problem: the file loads, checking the source says why."""
    path = write(tmp_path, GOOD)
    cfg = load(path, env={})
    expected = (f"{path}:14: sources[0].credentials.api_key: ${{SHIPENGINE_API_KEY}} is unset; "
                "export it or give a default with ${SHIPENGINE_API_KEY:-...}")
    assert cfg.sources[0].unset_variables == (expected,)
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, cfg.sources[0], ShipEngineOptions)
    assert str(info.value) == expected


def test_relative_path_is_shown_as_given(tmp_path, monkeypatch) -> None:
    write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    cfg = load("pipelines/daily.yaml", env={})
    with pytest.raises(ConfigError, match=r"^pipelines/daily\.yaml:14: sources\[0\]\.credentials\.api_key: "):
        validate_options(cfg, cfg.sources[0], ShipEngineOptions)


def test_relative_paths_are_taken_from_the_pipeline_file_not_the_working_directory(tmp_path, monkeypatch) -> None:
    """A cron job starts in $HOME: the same file must still name the same warehouse, lake and option files."""
    write(tmp_path, """\
        warehouse:
          path: ../data/wh.duckdb
          raw: /srv/raw
        sources:
          - provider: shipengine
        """)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load(tmp_path / "pipelines" / "daily.yaml", env={})
    assert cfg.warehouse.path == str(tmp_path / "data" / "wh.duckdb")
    assert cfg.warehouse.lake == str(tmp_path / "data" / "lake")
    assert cfg.warehouse.tokens == str(tmp_path / "data" / "tokens")
    assert cfg.warehouse.raw == "/srv/raw"  # absolute stays as given
    monkeypatch.chdir(tmp_path)
    relative = load("pipelines/daily.yaml", env={})
    assert relative.warehouse.path == "data/wh.duckdb"  # the same file, named from another folder
    assert Path(relative.warehouse.path).resolve() == Path(cfg.warehouse.path).resolve()


def test_home_folder_in_a_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    cfg = load(write(tmp_path, "warehouse: {path: ~/shipetl/wh.duckdb}\nsources:\n  - provider: shipengine\n"), env={})
    assert cfg.warehouse.path == str(tmp_path / "me" / "shipetl" / "wh.duckdb")
    assert cfg.warehouse.raw == str(tmp_path / "me" / "shipetl" / "raw")


def test_option_typed_as_a_path_is_taken_from_the_pipeline_file(tmp_path, monkeypatch) -> None:
    class FileOptions(BaseModel):
        ids_file: Path | None = None
        also: Path = Path("/etc/ids.txt")
        note: str = "not/a/path"

    path = write(tmp_path, "sources:\n  - provider: shipengine\n    options: {ids_file: ids.txt, note: a/b}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load(path, env={})
    options = validate_options(cfg, cfg.sources[0], FileOptions)
    assert options.ids_file == path.parent / "ids.txt"
    assert options.also == Path("/etc/ids.txt") and options.note == "a/b"


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
            max_open_polls: 0
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
    assert any(line.startswith(f"{path}:12: sources[0].max_open_polls: ") for line in lines)
    assert len(lines) == 8


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
        # An inline secret starting with * or ! is not repeated in the error.
        ("sources:\n  - provider: a\n    credentials: {api_key: *SEKEYq7Zr4Xw9}\n",
         "{path}:3: invalid YAML: a value starting with '*' or '!' is read as a YAML alias or tag; put the value in quotes"),
        ("sources:\n  - provider: a\n    credentials:\n      api_key: !SEKEYq7Zr4Xw9\n",
         "{path}:4: invalid YAML: a value starting with '*' or '!' is read as a YAML alias or tag; put the value in quotes"),
        ("sources: []\n", "{path}:1: sources: needs at least one source"),
        ("run: {}\n", "{path}: sources: required key is missing"),
        ("sources:\n  - enabled: true\n", "{path}:2: sources[0].provider: required key is missing"),
        ("sources:\n  - provider: a\n    base_url: ${BAD NAME}\n", "{path}:3: sources[0].base_url: ${{BAD NAME}} is not a valid reference"),
        ("sources:\n  - provider: a\n    status_map: {tracking_events: {07: in_transit}}\n",
         "{path}:3: sources[0].status_map: tracking_events: code 7 must be quoted text, as the code is sent ('07', not 07)"),
        ("sources:\n  - provider: a\n    status_map: {tracking_event: {DP: in_transit}}\n",
         "{path}:3: sources[0].status_map.tracking_event.[key]: input should be 'orders', 'shipments' or 'tracking_events'"),
        ("sources:\n  - provider: a\n    status_map:\n      shipments: {DP: moving}\n",
         "{path}:4: sources[0].status_map.shipments.DP: input should be 'pending', 'info_received', "),
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
    # The key's own line, and the variable that left it empty (a cron environment without the export).
    with pytest.raises(ConfigError, match=r"daily\.yaml:14: sources\[0\]\.credentials\.api_key: is empty "
                                          r"\(\$\{SHIPENGINE_API_KEY\} is set but empty\)$"):
        src.secret("api_key")
    # A missing key: the line of the mapping it belongs in.
    with pytest.raises(ConfigError, match=r"daily\.yaml:13: sources\[0\]\.credentials\.api_secret: missing"):
        src.secret("api_secret")
    blank = load(write(tmp_path, "sources:\n  - provider: shipengine\n    credentials: {api_key: '  '}\n"), env={})
    with pytest.raises(ConfigError, match=r"daily\.yaml:3: sources\[0\]\.credentials\.api_key: is empty$"):
        blank.sources[0].secret("api_key")


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


# ------------------------------------------------------------------ unquoted dates, lookback 0, base_url


@pytest.mark.parametrize("start", ["2025-13-01", '"2025-13-01"', "2025-02-30", "2025-02-30 10:00:00"])
def test_invalid_date_quoted_or_not_names_file_line_and_key(tmp_path, start) -> None:
    path = write(tmp_path, f"sources:\n  - provider: shipengine\n    start: {start}\n")
    message = error_of(path)
    assert message == (f"{path}:3: sources[0].start: expected a date like 2024-01-01 or a datetime like "
                       f"2024-01-01T00:00:00Z, got {start.strip(chr(34))!r}")


@pytest.mark.parametrize("start, shown", [("2999-01-01", "2999-01-01"), ("2999-01-01T00:00:00Z", "2999-01-01T00:00:00+00:00")])
def test_a_start_in_the_future_is_an_error(tmp_path, start, shown) -> None:
    path = write(tmp_path, f"sources:\n  - provider: shipengine\n    start: {start}\n")
    assert error_of(path) == f"{path}:3: sources[0].start: {shown} is in the future: a first run would fetch nothing until then"


def test_invalid_unquoted_date_in_options_reaches_the_options_model(tmp_path) -> None:
    class Dated(BaseModel):
        model_config = ConfigDict(extra="forbid")
        since: date

    path = write(tmp_path, "sources:\n  - provider: shipengine\n    options:\n      since: 2025-13-01\n")
    cfg = load(path, env={})
    assert cfg.sources[0].options == {"since": "2025-13-01"}
    with pytest.raises(ConfigError, match=rf"^{path}:4: sources\[0\]\.options\.since: "):
        validate_options(cfg, cfg.sources[0], Dated)


def test_valid_unquoted_dates_still_load_as_dates(tmp_path) -> None:
    path = write(tmp_path, "sources:\n  - provider: shipengine\n    start: 2025-12-01\n    options: {d: 2024-02-29}\n")
    src = load(path, env={}).sources[0]
    assert src.start == date(2025, 12, 1) and src.options == {"d": date(2024, 2, 29)}


@pytest.mark.parametrize("value", ["0", '"0"', "' 0 '", "0s", "0d"])
def test_lookback_zero(tmp_path, value) -> None:
    path = write(tmp_path, f"sources:\n  - provider: shipengine\n    lookback: {value}\n")
    src = load(path, env={}).sources[0]
    assert src.lookback == timedelta(0)


@pytest.mark.parametrize("value", ["1", "-1", "false", "0.5"])
def test_lookback_other_bare_numbers_still_rejected(tmp_path, value) -> None:
    path = write(tmp_path, f"sources:\n  - provider: shipengine\n    lookback: {value}\n")
    assert error_of(path).startswith(f"{path}:3: sources[0].lookback: expected a duration like '2d' or '6h'")


@pytest.mark.parametrize("url", ["not a url", "localhost:8080", "ftp://example.com", "http://", "https:///v1",
                                 "http://example.com:99999", "http://example.com:port"])
def test_base_url_must_be_http_url_with_host(tmp_path, url) -> None:
    path = write(tmp_path, f"sources:\n  - provider: shipengine\n    base_url: '{url}'\n")
    assert error_of(path) == (f"{path}:3: sources[0].base_url: expected an http(s) URL with a host, "
                              f"like 'https://api.example.com', got {url!r}")


def test_a_bad_base_url_is_shown_without_its_password(tmp_path) -> None:
    path = write(tmp_path, "sources:\n  - provider: shipengine\n    base_url: 'https://proxyuser:Pr0xyPassw0rd@api.example:44x3'\n")
    assert error_of(path) == (f"{path}:3: sources[0].base_url: expected an http(s) URL with a host, "
                              f"like 'https://api.example.com', got 'https://***@api.example:44x3'")


@pytest.mark.parametrize("url", ["http://localhost:8080", "https://api.example.com/v1/", "HTTPS://API.EXAMPLE.COM",
                                 "http://127.0.0.1:8765/shipengine", "http://[::1]:80"])
def test_base_url_accepts_http_urls(tmp_path, url) -> None:
    path = write(tmp_path, f"sources:\n  - provider: shipengine\n    base_url: '{url}'\n")
    assert load(path, env={}).sources[0].base_url == url


def test_base_url_not_text(tmp_path) -> None:
    path = write(tmp_path, "sources:\n  - provider: shipengine\n    base_url: 8080\n")
    assert error_of(path).startswith(f"{path}:3: sources[0].base_url: expected an http(s) URL")


# ------------------------------------------------------------------ unset variables belong to their source

TWO_SOURCES = """\
warehouse:
  path: ${WH_DIR:-data}/wh.duckdb
sources:
  - name: ok
    provider: shipengine
    credentials: {api_key: "${KEY_OK}"}
  - name: idle
    provider: shipengine
    enabled: false
    base_url: ${OFF_URL}
    credentials:
      api_key: ${KEY_OFF}
      other: "${KEY_OK}"
"""


def test_unset_variable_in_a_source_does_not_stop_the_load(tmp_path, secrets) -> None:
    path = write(tmp_path, TWO_SOURCES)
    cfg = load(path, env={"KEY_OK": SECRET})
    ok, idle = cfg.sources
    assert ok.unset_variables == () and ok.secret("api_key") == SECRET
    assert validate_options(cfg, ok, NoOptionsModel) == NoOptionsModel()
    assert idle.enabled is False and idle.base_url is None  # the key with the unset variable is left out
    assert idle.unset_variables == (
        f"{path}:10: sources[1].base_url: ${{OFF_URL}} is unset; export it or give a default with ${{OFF_URL:-...}}",
        f"{path}:12: sources[1].credentials.api_key: ${{KEY_OFF}} is unset; export it or give a default with ${{KEY_OFF:-...}}",
    )
    assert "api_key" not in idle.credentials and idle.secret("other") == SECRET
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, idle, NoOptionsModel)
    assert str(info.value).splitlines() == list(idle.unset_variables)  # every one, options not looked at
    assert secrets == [SECRET, SECRET]


def test_unset_variable_outside_sources_still_fails_the_load(tmp_path) -> None:
    path = write(tmp_path, TWO_SOURCES.replace("${WH_DIR:-data}", "${WH_DIR}"))
    lines = error_of(path, env={"KEY_OK": SECRET}).splitlines()
    assert lines[0] == f"{path}:2: warehouse.path: ${{WH_DIR}} is unset; export it or give a default with ${{WH_DIR:-...}}"
    assert len(lines) == 3  # and the sources' ones, all at once


@pytest.mark.parametrize("key", ["name", "provider"])
def test_unset_variable_in_what_names_a_source_fails_the_load(tmp_path, key) -> None:
    path = write(tmp_path, f"sources:\n  - {key}: ${{WHO}}\n    provider: shipengine\n".replace(
        "provider: shipengine\n", "name: x\n" if key == "provider" else "provider: shipengine\n"))
    assert error_of(path).startswith(f"{path}:2: sources[0].{key}: ${{WHO}} is unset")


# ------------------------------------------------------------------ credentials the provider does not read


class NoOptionsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_key: str | None = None


class KeyedProvider(Provider):
    name = "keyedco"
    default_base_url = "https://keyed.example"
    options_model = KeyedOptions
    secrets = ("api_key", "auth_code")


def keyed(tmp_path, credentials: str) -> tuple[Path, config.PipelineConfig]:
    path = write(tmp_path, f"sources:\n  - provider: keyedco\n    credentials:\n{credentials}")
    return path, load(path, env={})


def test_unknown_credential_suggests_the_declared_one(tmp_path) -> None:
    path, cfg = keyed(tmp_path, "      apikey: k-1\n      pii_key: p-1\n")
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, cfg.sources[0], KeyedOptions, KeyedProvider)
    assert str(info.value) == f"{path}:4: sources[0].credentials.apikey: unknown credential; did you mean 'api_key'?"


def test_unknown_credential_without_close_match_lists_the_credentials_not_the_options(tmp_path) -> None:
    path, cfg = keyed(tmp_path, "      api_key: k-1\n      zzz: k-2\n")
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, cfg.sources[0], KeyedOptions, KeyedProvider)
    assert str(info.value) == (f"{path}:5: sources[0].credentials.zzz: unknown credential; provider keyedco reads "
                               "credentials 'api_key', 'auth_code', 'pii_key'")


def test_optional_and_core_credentials_are_not_required(tmp_path) -> None:
    # auth_code is optional (stored tokens), pii_key is core's, app_key is an option also accepted as a credential.
    _, cfg = keyed(tmp_path, "      api_key: k-1\n      app_key: '12345678'\n      pii_key: p-1\n")
    assert validate_options(cfg, cfg.sources[0], KeyedOptions, KeyedProvider) == KeyedOptions()
    _, cfg = keyed(tmp_path, "      pii_key: p-1\n")
    assert validate_options(cfg, cfg.sources[0], KeyedOptions, KeyedProvider) == KeyedOptions()


def test_unknown_credential_and_bad_option_reported_together(tmp_path) -> None:
    path = write(tmp_path, "sources:\n  - provider: keyedco\n    credentials: {apikey: k}\n    options: {ap_key: 1}\n")
    cfg = load(path, env={})
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, cfg.sources[0], KeyedOptions, KeyedProvider)
    assert str(info.value).splitlines() == [
        f"{path}:3: sources[0].credentials.apikey: unknown credential; did you mean 'api_key'?",
        f"{path}:4: sources[0].options.ap_key: unknown key; did you mean 'app_key'?",
    ]


def test_provider_declaring_no_secrets_is_not_checked(tmp_path) -> None:
    path = write(tmp_path, "sources:\n  - provider: shipengine\n    credentials: {anything: k}\n")
    cfg = load(path, env={})
    class Undeclared(Provider):
        name = "undeclaredco"
        default_base_url = "https://undeclared.example"

    assert validate_options(cfg, cfg.sources[0], NoOptionsModel, Undeclared) == NoOptionsModel()


def test_installed_shopee_and_aliexpress_credentials(tmp_path) -> None:
    from shipetl.plugins import load_registry

    registry = load_registry()
    path = write(tmp_path, """\
        sources:
          - provider: shopee
            credentials: {partner_id: 1234, partner_key: k-1, pii_key: p-1}
            options: {shop_ids: [1]}
          - provider: aliexpress
            credentials: {app_key: '12345678', app_secret: s-1, auth_code: c-1}
            options: {order_ids: ['1']}
          - name: typo
            provider: shopee
            credentials: {partner_kye: k-1}
            options: {shop_ids: [1]}
        """)
    cfg = load(path, env={})
    for src in cfg.sources[:2]:
        validate_options(cfg, src, registry.provider(src.provider).options_model, registry.provider(src.provider))
    with pytest.raises(ConfigError) as info:
        validate_options(cfg, cfg.sources[2], registry.provider("shopee").options_model, registry.provider("shopee"))
    assert str(info.value) == f"{path}:10: sources[2].credentials.partner_kye: unknown credential; did you mean 'partner_key'?"


def test_the_demo_pipeline_takes_no_credential_from_the_environment() -> None:
    """`make demo` with the real keys of daily.yaml exported still runs, and never sends them to the sandbox."""
    demo = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"
    real = {name: "real-secret-from-the-shell" for name in (
        "SHIPENGINE_API_KEY", "ALIEXPRESS_APP_SECRET", "ALIEXPRESS_AUTH_CODE", "FUUFFY_CLIENT_ID", "FUUFFY_CLIENT_SECRET",
        "SHIPETL_PII_KEY", "SHOPEE_PARTNER_KEY", "SHOPEE_AUTH_CODE")}
    cfg = load(demo, env=real)
    secrets = [source.secret(name) for source in cfg.sources for name in source.credentials]
    assert secrets and "real-secret-from-the-shell" not in secrets
