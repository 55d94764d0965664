"""Plugin loading and the registry: one ``test_hook_<name>`` per hook, then compatibility and isolation.

Plugins here are module objects handed to ``registry_from_modules`` (the same checks as installed
entry points), plus the outside example plugin imported from ``tests/example_plugin``. Installing real
distributions is ``tests/test_installed_plugins.py``.
"""

from __future__ import annotations

import io
import re
import sys
import types
from importlib.metadata import EntryPoint
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

import shipetl.destination
from shipetl import Provider, config, hookimpl, plugins, summary
from shipetl.errors import ConfigError, PluginError
from shipetl.runner import run_pipeline
from shipetl.sandbox import SandboxSettings, running_sandbox

EXAMPLE_DIR = Path(__file__).parent / "example_plugin"
sys.path.insert(0, str(EXAMPLE_DIR))
import shipetl_example  # noqa: E402  (an outside distribution's package, importable from its folder)
from shipetl_example.provider import ExampleProvider  # noqa: E402
from shipetl_example.server import create_app as example_app  # noqa: E402


BOOM_LINE = ("internal error in provider boom: ZeroDivisionError: plugin bug (a reply the plugin cannot read: check the "
             "source's base_url; if it is right, report this line and the log's traceback to the plugin's author)")


def plugin(name: str, **hooks) -> types.ModuleType:
    """A plugin module whose hook implementations are ``hooks`` (plain functions, marked here)."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        function.__name__ = hook_name
        setattr(module, hook_name, hookimpl(function))
    return module


def registry(**modules):
    return plugins.registry_from_modules(modules)


def refine_example(code: str, status: str):
    return plugin("status_only", register_status_maps=lambda register: register("example", {code: status}, override=True))


class BoomProvider(Provider):
    """A provider with a bug: extract raises."""

    name = "boom"
    default_base_url = "http://127.0.0.1:9"
    streams = ExampleProvider.streams

    def extract(self, ctx):
        raise ZeroDivisionError("plugin bug")
        yield


@pytest.fixture
def example_server():
    with running_sandbox({"example": example_app}, SandboxSettings(port=0)) as url:
        yield f"{url}/example"


@pytest.fixture
def example_pipeline(make_pipeline, example_server):
    def make(extra_sources: str = "", destination: str | None = None):
        path = make_pipeline(f"""
            - provider: example
              base_url: {example_server}
              credentials: {{token: example-token}}
            {extra_sources}""")
        if destination:
            path.write_text(f"destination: {destination}\n" + path.read_text())
        return config.load(path)
    return make


def shipments_latest(pipeline) -> dict[str, str]:
    con = duckdb.connect(pipeline.warehouse.path, read_only=True)
    try:
        return dict(con.execute("SELECT shipment_id, status FROM shipments_latest").fetchall())
    finally:
        con.close()


# -- one test per hook ----------------------------------------------------------------------------


def test_hook_shipetl_api_version():
    future = plugin("future", shipetl_api_version=lambda: 2, register_providers=lambda register: register(BoomProvider))
    current = plugin("current", shipetl_api_version=lambda: 1)
    reg = registry(future=future, current=current, example=shipetl_example)
    assert "targets hook API version 2" in reg.plugins["future"].error
    assert "boom" not in reg.providers, "an incompatible plugin must not contribute anything"
    assert reg.plugins["current"].ok and reg.plugins["example"].ok  # example does implement the hook


def test_hook_register_providers():
    reg = registry(example=shipetl_example)
    assert reg.providers == {"example": ExampleProvider}
    assert reg.plugins["example"].provides[0] == "provider:example"
    clash = registry(example=shipetl_example,
                     zz_copy=plugin("zz_copy", register_providers=lambda register: register(ExampleProvider)))
    assert "registered by both plugin example and plugin zz_copy" in clash.plugins["zz_copy"].error
    not_a_provider = registry(bad=plugin("bad", register_providers=lambda register: register(object)))
    assert "not a shipetl.Provider subclass" in not_a_provider.plugins["bad"].error


def test_a_provider_declares_its_order_states_and_a_word_outside_the_vocabulary_is_refused():
    Declaring = type("Declaring", (ExampleProvider,), {"name": "declaring", "order_states": {"VOID": "cancelled"}})
    Wrong = type("Wrong", (ExampleProvider,), {"name": "wrong", "order_states": {"VOID": "voided"}})
    reg = registry(example=shipetl_example, good=plugin("good", register_providers=lambda register: register(Declaring)),
                   bad=plugin("bad", register_providers=lambda register: register(Wrong)))
    assert reg.order_states() == {"declaring": {"VOID": "cancelled"}}  # example declares none: left out
    assert "provider wrong order_states {'VOID': 'voided'}: each must be one of cancelled, cancel_requested, " \
           "awaiting_payment" in reg.plugins["bad"].error
    assert plugins.load_registry().order_states()["shopee"]["CANCELLED"] == "cancelled"  # the built-ins declare theirs


def test_hook_register_status_maps():
    # "aaa_" sorts first, so the override is registered before the table it refines: it must still win.
    reg = registry(aaa_refine=refine_example("30", "out_for_delivery"), example=shipetl_example)
    assert reg.statuses.lookup("example", "30").status == "out_for_delivery"
    assert reg.statuses.lookup("example", "20").status == "in_transit"
    assert reg.status_suppliers()["example"] == ["aaa_refine", "example"]
    assert "statuses:example (overrides example)" in reg.plugins["aaa_refine"].provides
    clash = registry(example=shipetl_example, zz=plugin("zz", register_status_maps=lambda register: register(
        "example", {"20": "delivered", "99": "pending"})))
    assert "'in_transit' in plugin example but 'delivered' in plugin zz" in clash.plugins["zz"].error
    assert clash.statuses.lookup("example", "99") is None, "a refused table leaves no codes behind"
    assert clash.statuses.lookup("example", "20").status == "in_transit"


def test_hook_register_destinations(example_pipeline):
    loaded = []

    class MemoryDestination:
        def __init__(self, pipeline):
            self.pipeline = pipeline

        def commit(self, staged, run, cursors):
            rows = staged.con.execute("SELECT count(*) FROM temp.main.staged_tracking_events").fetchone()[0]
            loaded.append((run.source, rows, dict(cursors)))
            run.loaded = {"tracking_events": rows}
            return run.loaded

        def record_failure(self, run):
            loaded.append((run.source, "failed", run.error))

        def start_state(self, source, provider, account_id):
            return {}, []

        def query(self, sql, params=None):
            return []

    memory = plugin("memory", register_destinations=lambda register: register("memory", MemoryDestination))
    boom = plugin("boom", register_providers=lambda register: register(BoomProvider))
    reg = registry(duckdb=shipetl.destination, example=shipetl_example, memory=memory, boom=boom)
    assert set(reg.destinations) == {"duckdb", "memory"}
    pipeline = example_pipeline("- provider: boom", destination="memory")
    result = run_pipeline(pipeline, registry=reg)
    assert sorted(loaded, key=str) == [("boom", "failed", BOOM_LINE),
                                       ("example", 6, {})]
    assert not Path(pipeline.warehouse.path).exists(), "the duckdb destination was not asked to load anything"
    assert [r.ok for r in sorted(result.sources, key=lambda r: r.source)] == [False, True]
    with pytest.raises(ConfigError, match=r"no destination named 'nowhere' is installed \(installed: duckdb, memory\)"):
        run_pipeline(example_pipeline(destination="nowhere"), registry=reg)
    del MemoryDestination.query, MemoryDestination.start_state
    with pytest.raises(PluginError, match=r"destination 'memory' has no start_state, query method"):
        run_pipeline(example_pipeline(destination="memory"), registry=reg)


class StateProbe(Provider):
    """Fetches nothing; records what its context shows of the last commit."""

    name = "probe"
    default_base_url = "http://127.0.0.1:9"
    streams = ExampleProvider.streams
    seen: list = []

    def extract(self, ctx):
        self.seen.append((ctx.window("since")[0], list(ctx.open_shipments()), ctx.query("SELECT 'x' WHERE ? = 1", [1])))
        yield from ()


def test_a_destination_hands_the_run_its_own_cursors_open_shipments_and_query(example_pipeline):
    class RememberingDestination:
        """Keeps cursors in memory; the pipeline's DuckDB file must never be read."""

        def __init__(self, pipeline):
            pass

        def commit(self, staged, run, cursors):
            return {}

        def record_failure(self, run):
            raise AssertionError(run.error)

        def start_state(self, source, provider, account_id):
            return {"since": "2025-01-02T00:00:00+00:00"}, [{"shipment_id": f"open-{provider}-{account_id}"}]

        def query(self, sql, params=None):
            return [("from the destination", sql, params)]

    memory = plugin("memory", register_destinations=lambda register: register("memory", RememberingDestination))
    probe = plugin("probe", register_providers=lambda register: register(StateProbe))
    reg = registry(duckdb=shipetl.destination, memory=memory, probe=probe, example=shipetl_example)
    pipeline = example_pipeline("- provider: probe", destination="memory")
    pipeline.sources = [s for s in pipeline.sources if s.provider == "probe"]
    StateProbe.seen.clear()
    assert run_pipeline(pipeline, registry=reg).ok
    assert StateProbe.seen == [(datetime(2025, 1, 2, tzinfo=UTC), [{"shipment_id": "open-probe-probe"}],
                                [("from the destination", "SELECT 'x' WHERE ? = 1", [1])])]
    assert not Path(pipeline.warehouse.path).exists()


def test_validate_names_the_installed_destinations_when_one_is_unknown(run_cli, make_pipeline):
    path = make_pipeline("- provider: shipengine\n  credentials: {api_key: k}")
    path.write_text("destination: nowhere\n" + path.read_text())
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:1: destination: no destination named 'nowhere' is installed (installed: duckdb" in result.stderr


def test_hook_register_sandboxes():
    reg = registry(example=shipetl_example)
    assert reg.sandboxes == {"example": example_app}
    twice = registry(example=shipetl_example,
                     zz=plugin("zz", register_sandboxes=lambda register: register("example", example_app)))
    assert "sandbox 'example' is registered twice" in twice.plugins["zz"].error


def test_every_hook_has_a_test():
    hooks = {spec.__name__ for spec in plugins.hookspec_functions()}
    tested = {name.removeprefix("test_hook_") for name in globals() if name.startswith("test_hook_")}
    assert hooks == tested


# -- compatibility: broken plugins are reported and left out, never fatal ---------------------------


def test_bad_hook_signature_and_misspelt_hook_are_reported():
    extra_arg = plugin("extra_arg", register_providers=lambda register, pipeline: None)
    misspelt = plugin("misspelt", register_provider=lambda register: None)
    reg = registry(extra_arg=extra_arg, misspelt=misspelt, example=shipetl_example)
    assert "bad hook implementation" in reg.plugins["extra_arg"].error and "pipeline" in reg.plugins["extra_arg"].error
    assert "unknown hook 'register_provider'" in reg.plugins["misspelt"].error
    assert reg.providers == {"example": ExampleProvider}


def test_raising_hook_marks_only_its_plugin_broken_and_drops_what_it_gave():
    def register_then_crash(register):
        register("flaky", example_app)
        raise KeyError("missing setting")

    flaky = plugin("flaky", register_providers=lambda register: register(BoomProvider),
                   register_sandboxes=register_then_crash)
    reg = registry(flaky=flaky, example=shipetl_example)
    assert reg.plugins["flaky"].error == "register_sandboxes raised KeyError: 'missing setting'"
    assert "boom" not in reg.providers and "flaky" not in reg.sandboxes and not reg.plugins["flaky"].provides
    assert reg.plugins["example"].ok and "example" in reg.providers


def test_entry_point_that_fails_to_import_is_reported_by_name(monkeypatch):
    entries = [EntryPoint("example", "shipetl_example", "shipetl"),
             EntryPoint("ghost", "shipetl_ghost_not_installed", "shipetl"),
             EntryPoint("duckdb", "shipetl.destination", "shipetl")]
    monkeypatch.setattr(plugins, "entry_points", lambda group: list(entries))
    reg = plugins.load_registry()
    assert reg.plugins["ghost"].error == "failed to load: ModuleNotFoundError: No module named 'shipetl_ghost_not_installed'"
    assert reg.plugins["example"].ok and reg.providers == {"example": ExampleProvider}
    text = plugins.report(reg)
    assert "ghost" in text and "BROKEN" in text and "1 plugin(s) not loaded: ghost" in text


def test_report_columns_widen_for_a_long_name_so_every_row_lines_up():
    reg = registry(example=shipetl_example, **{"a_rather_long_plugin_name": refine_example("30", "out_for_delivery")})
    rows = [line for line in plugins.report(reg).splitlines() if line.endswith((" ok", " BROKEN"))]
    starts = [tuple(m.start() for m in re.finditer(r"(?<= )\S", line)) for line in rows]  # where each column starts
    assert len(rows) == 2 and starts[0] == starts[1], rows


def test_report_names_each_status_namespace_supplier():
    reg = registry(example=shipetl_example, refine=refine_example("30", "out_for_delivery"))
    text = plugins.report(reg)
    assert "status maps (namespace: supplied by)\n    example: example, refine" in text
    assert "statuses:example (overrides example)" in text


# -- in a run -------------------------------------------------------------------------------------


def test_provider_raising_in_extract_fails_only_its_source(example_pipeline):
    boom = plugin("boom", register_providers=lambda register: register(BoomProvider))
    broken = plugin("broken", shipetl_api_version=lambda: 7)
    reg = registry(duckdb=shipetl.destination, example=shipetl_example, boom=boom, broken=broken)
    pipeline = example_pipeline("- provider: boom")
    result = run_pipeline(pipeline, registry=reg)
    by_source = {r.source: r for r in result.sources}
    assert by_source["boom"].error == BOOM_LINE
    assert by_source["example"].ok and by_source["example"].loaded["tracking_events"] == 6
    assert list(result.broken_plugins) == ["broken"]
    out = io.StringIO()
    summary.render(result, Console(file=out, width=200))
    assert "plugin broken not loaded: targets hook API version 7" in out.getvalue()


def test_status_map_plugin_changes_status_in_next_run(example_pipeline):
    pipeline = example_pipeline()
    base = registry(duckdb=shipetl.destination, example=shipetl_example)
    assert run_pipeline(pipeline, registry=base).ok
    assert shipments_latest(pipeline)["EX-1002"] == "in_transit"
    refined = registry(duckdb=shipetl.destination, example=shipetl_example,
                       refine=refine_example("30", "out_for_delivery"))
    assert run_pipeline(pipeline, registry=refined).ok
    after = shipments_latest(pipeline)
    assert (after["EX-1001"], after["EX-1002"]) == ("delivered", "out_for_delivery")
