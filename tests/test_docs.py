"""README's generated references match the code; ``shipetl schema`` lists every table and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shipetl import docs, starter
from shipetl.cli import cli
from shipetl.errors import ShipetlError
from shipetl.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]

README = ROOT / "README.md"


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert docs.refresh(text) == text, "README.md is stale: run `python -m shipetl.docs README.md`"


def test_the_repositorys_daily_yaml_is_the_starter_shipetl_init_writes(tmp_path) -> None:
    assert (ROOT / starter.PLACE).read_text(encoding="utf-8") == starter.template_text(), (
        "pipelines/daily.yaml differs from shipetl/daily.yaml: edit shipetl/daily.yaml, then run `python -m shipetl.docs README.md`")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "shop")])
    assert result.exit_code == 0, result.output
    written = tmp_path / "shop" / "pipelines" / "daily.yaml"
    assert written.read_text(encoding="utf-8") == starter.template_text()
    assert f"wrote {written}" in result.output and f"shipetl validate {written}" in result.output
    again = CliRunner().invoke(cli, ["init", str(tmp_path / "shop")])
    assert again.exit_code == 2 and f"{written} exists already" in again.output


def test_shipetl_plugins_name_prints_a_providers_reference_as_the_readme_has_it() -> None:
    for name in ("shipengine", "shopee"):
        result = CliRunner().invoke(cli, ["plugins", name])
        assert result.exit_code == 0 and result.output.startswith(f"#### `{name}`\n")
        assert result.output in README.read_text(encoding="utf-8")
    unknown = CliRunner().invoke(cli, ["plugins", "dhl"])
    assert unknown.exit_code == 2 and "no provider 'dhl' installed; providers: aliexpress," in unknown.output


def test_stale_copy_is_detected_and_refresh_fixes_it(tmp_path) -> None:
    text = docs.refresh(README.read_text(encoding="utf-8"))
    stale = text.replace("| `shipment_id` |", "| `parcel_id` |", 1).replace("#### `shipetl run`", "#### `shipetl go`", 1)
    assert stale != text
    assert docs.refresh(stale) != stale
    copy = tmp_path / "README.md"
    copy.write_text(stale, encoding="utf-8")
    copy.write_text(docs.refresh(copy.read_text(encoding="utf-8")), encoding="utf-8")
    fixed = copy.read_text(encoding="utf-8")
    assert fixed == text
    assert docs.refresh(fixed) == fixed


def test_refresh_keeps_text_outside_the_sections() -> None:
    text = ("# Title\n\nbefore\n<!-- cli:start -->\nold cli\n<!-- cli:end -->\nmiddle\n"
            "<!-- schema:start -->\nold schema\n<!-- schema:end -->\n"
            "<!-- providers:start -->\nold providers\n<!-- providers:end -->\nafter\n")
    out = docs.refresh(text)
    assert out.startswith("# Title\n\nbefore\n<!-- cli:start -->\n")
    assert "\nmiddle\n<!-- schema:start -->\n" in out and out.endswith("<!-- providers:end -->\nafter\n")
    assert "old cli" not in out and "old schema" not in out and "old providers" not in out
    assert "#### `shipetl run`" in out and "#### `tracking_events`" in out and "#### `shipengine`" in out


def test_refresh_without_a_section_says_which() -> None:
    with pytest.raises(ShipetlError, match="schema:start"):
        docs.refresh("<!-- cli:start -->\n<!-- cli:end -->\n<!-- providers:start -->\n<!-- providers:end -->\n")


def test_schema_markdown_has_every_column() -> None:
    md = docs.schema_markdown()
    for table in TABLES.values():
        assert f"#### `{table.name}`" in md
        for f in table.columns:
            assert f"| `{f.name}` | `{f.type}` |" in md


def test_cli_markdown_has_every_command() -> None:
    md = docs.cli_markdown()
    for name in cli.list_commands(None):
        assert f"#### `shipetl {name}`" in md
        assert cli.get_command(None, name).help.splitlines()[0][:40] in md


def test_cli_markdown_matches_help_output() -> None:
    md = docs.cli_markdown()
    for name in cli.list_commands(None):
        result = CliRunner().invoke(cli, [name, "--help"], prog_name="shipetl")
        assert result.exit_code == 0
        usage = result.output.splitlines()[0]
        assert usage.startswith(f"Usage: shipetl {name} ")
        assert f"```text\n{usage}\n" in md, usage


def test_schema_command_lists_every_table_and_column() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    for table in TABLES.values():
        assert f"{table.name}: {table.description}" in result.output
        for f in table.columns:
            assert f"  {f.name} " in result.output, f"{table.name}.{f.name}"
            assert f.metadata[b"doc"].decode() in result.output


def test_schema_command_one_table() -> None:
    result = CliRunner().invoke(cli, ["schema", "tracking_events"])
    assert result.exit_code == 0
    assert result.output.startswith("tracking_events: ")
    assert "event_id" in result.output and "not null" in result.output
    assert "orders:" not in result.output and "record_hash" not in result.output


def test_schema_command_unknown_table() -> None:
    result = CliRunner().invoke(cli, ["schema", "parcels"])
    assert result.exit_code == 2
    assert "parcels" in result.output and "tracking_events" in result.output
    assert "Traceback" not in result.output


def test_readme_config_reference_has_every_key_of_the_pipeline_file() -> None:
    from shipetl.config import PipelineConfig, SourceConfig

    text = README.read_text(encoding="utf-8")
    documented = {line.split("|")[1].strip().strip("`") for line in text.splitlines() if line.startswith("| `")}
    keys = {f"sources[].{key}" for key in SourceConfig.model_fields}
    for name, field in PipelineConfig.model_fields.items():
        if name == "sources":
            continue
        nested = getattr(field.annotation, "model_fields", None)
        keys |= {f"{name}.{key}" for key in nested} if nested else {name}
    assert {"warehouse.path", "run.expire_after_days", "destination", "sources[].max_open_polls"} <= keys
    assert keys - documented == set(), "README.md's configuration table misses these keys"
