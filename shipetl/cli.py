"""The ``shipetl`` command: each subcommand reads its options, calls one core function, prints the result.

It stays one module past 400 lines on purpose: it is the catalogue of commands, each a short wrapper over a core
module, and the README's CLI reference is generated from it in that one place.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import click

from . import __version__


def _load(pipeline: str):
    from . import config

    return config.load(pipeline)


def _stdout_closed() -> None:
    """Standard output's reader went away (``shipetl sql ... | head -1``): stop quietly, as Unix tools do.

    Standard output is pointed at /dev/null first, so the interpreter's last flush cannot fail again
    with "Exception ignored ... BrokenPipeError" on stderr.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (click's CliRunner)
        pass


def _report_error(command: str | None, message: str) -> None:
    """An error on stderr: ``error: ...`` on a console, one ``command_failed`` event among JSON logs; secrets masked."""
    from . import log
    from .redact import redact_text

    message = redact_text(message)
    if log.current_format() == "json":
        log.get_logger().error("command_failed", command=command, error=message)
    else:
        click.echo(f"error: {message}", err=True)


class _Cli(click.Group):
    """Turns shipetl's own errors into one line on stderr (a JSON event with JSON logs) and exit code 2,
    never a traceback. With JSON logs a usage error (a pipeline file that is not there, a bad option) is
    such an event too; on a console click prints it with the usage line.

    A closed standard output (the reader of a pipe exited) ends the command quietly with exit code 0.
    """

    def invoke(self, ctx):
        from . import log
        from .errors import ShipetlError

        try:
            return super().invoke(ctx)
        except ShipetlError as exc:
            _report_error(ctx.invoked_subcommand, str(exc))
            sys.exit(2)
        except click.ClickException as exc:
            if log.current_format() != "json":
                raise
            _report_error(ctx.invoked_subcommand, exc.format_message())
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            _stdout_closed()
            sys.exit(0)


def _render_summary(result) -> None:
    """The run summary: the table on stdout, or with JSON logs one ``source_summary`` event per source too.

    A closed stdout does not change the exit code, which says whether every source succeeded.
    """
    from . import log, summary

    if log.current_format() == "json":
        summary.log_events(result)
    try:
        summary.render(result)
    except BrokenPipeError:
        _stdout_closed()


def _positive(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value is not None and value < 1:
        raise click.BadParameter(f"{value} is not a positive number; give 1 or more")
    return value


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d") if value.time() == datetime.min.time() else value.isoformat(sep=" ")


class UtcTime(click.ParamType):
    """A date or ISO 8601 date-time, as ``start:`` takes it: ``2025-11-01``, ``2025-11-01T06:00:00``,
    ``2025-11-01 06:00``, ``2025-11-01T06:00:00Z`` or ``...+08:00``; without an offset it is UTC."""

    name = "TIME"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        from .context import as_utc

        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a date or an ISO 8601 time (2025-11-01, 2025-11-01T06:00:00Z)", param, ctx)
        return as_utc(parsed)


def _loopback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from .errors import ShipetlError
    from .sandbox.server import check_loopback

    try:
        check_loopback(value)
    except ValueError:
        raise ShipetlError(f"--host {value!r} is not a loopback address; the sandbox only listens on "
                           "127.0.0.1, ::1 or localhost") from None
    return value


@click.group(cls=_Cli)
@click.version_option(__version__, prog_name="shipetl")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default="auto", show_default=True,
              help="Console output on a terminal, JSON lines for cron and log shippers.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def cli(log_format: str, log_level: str) -> None:
    """Pull orders, shipments and tracking events into one DuckDB + Parquet warehouse."""
    from . import log

    log.configure(log_format, log_level)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.option("--since", type=UtcTime(),
              help="Fetch from this time (UTC unless it has an offset) instead of the stored cursor.")
@click.option("--until", type=UtcTime(), help="Fetch up to this time (default and at most: now).")
@click.option("--only", multiple=True, metavar="SOURCE[/ACCOUNT]",
              help="Run only this source, or one of its accounts as the summary names it (repeatable).")
@click.option("--progress/--no-progress", default=None, help="Progress display (default: on a terminal).")
def run(pipeline: str, since: datetime | None, until: datetime | None, only: tuple[str, ...], progress: bool | None) -> None:
    """Run every source in PIPELINE and print the summary; exit 1 if any source failed, 130 on Ctrl-C, 143 on SIGTERM."""
    from . import progress as progress_mod
    from . import runner

    if since is not None and until is not None and since >= until:
        raise click.UsageError(f"--since {_when(since)} must be before --until {_when(until)}")
    if since is not None and since >= datetime.now(timezone.utc):
        raise click.UsageError(f"--since {_when(since)} is not in the past: there is nothing to fetch yet")
    terminated = []

    def stop_like_ctrl_c(signum, frame):  # what timeout, systemd and Kubernetes send
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    try:
        with progress_mod.display(enabled=progress) as tick:
            result = runner.run_pipeline(_load(pipeline), since=since, until=until, only=only, progress=tick)
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM while the first one's commits run (or before any began)
        _stop_at_once(128 + signal.SIGTERM if terminated else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _render_summary(result)
    if result.interrupted:
        sys.exit(128 + signal.SIGTERM if terminated else 130)
    sys.exit(0 if result.ok else 1)


def _stop_at_once(code: int) -> NoReturn:
    """Exit now, without waiting for the commits under way: they are dropped as a ``kill -9`` would drop them,
    which the warehouse and the lake are built to survive."""
    from .log import get_logger

    get_logger().error("run_stopped_at_once", error="stopped at once by a second Ctrl-C or SIGTERM: sources not "
                       "committed yet loaded nothing (the warehouse is as their last commit left it); the next run "
                       "fetches them again")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
def validate(pipeline: str) -> None:
    """Check PIPELINE: keys, types, ${VAR}s, folders, provider names, options and credentials; print it with secrets masked.

    Every enabled source is checked as `run` would before its first request; disabled ones only for keys and types.
    """
    from . import jobs, plugins, runner, storage
    from .errors import ConfigError

    cfg = _load(pipeline)
    registry = plugins.load_registry()
    runner.destination_factory(cfg, registry)  # an unknown destination names the installed ones
    _, refused = jobs.plan(cfg, registry)
    problems = storage.problems(cfg) + [  # every source's problems, not just the first failing one's
        str(exc) if isinstance(exc, ConfigError) else runner.error_line(exc, src.provider) for src, exc in refused]
    if problems:
        raise ConfigError("\n".join(problems))
    import yaml

    click.echo(yaml.safe_dump(cfg.redacted_dict(), sort_keys=False, allow_unicode=True), nl=False)
    disabled = [s.name for s in cfg.sources if not s.enabled]
    note = f"; disabled, not checked: {', '.join(disabled)}" if disabled else ""
    click.echo(f"{pipeline}: ok ({len(cfg.sources)} source(s){note})", err=True)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.option("--only", multiple=True, metavar="SOURCE[/ACCOUNT]",
              help="Check only this source, or one of its accounts (repeatable).")
def check(pipeline: str, only: tuple[str, ...]) -> None:
    """Make each source account's first request, as a first run would, and stop there; exit 1 if any failed.

    Proves base URLs, credentials and tokens before the first nightly run; writes nothing to the raw zone
    or the warehouse.
    """
    from . import check as check_mod

    results = check_mod.check_pipeline(_load(pipeline), only=only)
    check_mod.render(results)
    sys.exit(0 if all(r.ok for r in results) else 1)


@cli.command("lake")
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.option("--rebuild", is_flag=True, help="Rewrite every partition that differs from the warehouse.")
def lake_cmd(pipeline: str, rebuild: bool) -> None:
    """Compare the Parquet lake with the warehouse, partition by partition; exit 1 if they differ.

    With --rebuild, rewrite the differing partitions from the warehouse (no run may commit meanwhile).
    """
    from . import lake_audit

    cfg = _load(pipeline)
    drifts = lake_audit.rebuild(cfg) if rebuild else lake_audit.audit(cfg)
    if not drifts:
        click.echo(f"{cfg.warehouse.lake}: every partition matches the warehouse", err=True)
        return
    lake_audit.render(drifts, "rebuilt" if rebuild else "partitions that differ")
    if not rebuild:
        click.echo(f"{len(drifts)} partition(s) differ; `shipetl lake {pipeline} --rebuild` rewrites them", err=True)
        sys.exit(1)


@cli.command("plugins")
@click.argument("provider", required=False)
def plugins_cmd(provider: str | None) -> None:
    """List installed plugins: package, module, what each provides, why any failed, who supplied each status map.

    With a PROVIDER name, print its reference instead: defaults, credentials and options, as in the README.
    """
    from . import docs, plugins

    registry = plugins.load_registry()
    if provider is None:
        click.echo(plugins.report(registry), nl=False)
        return
    if provider not in registry.providers:
        raise click.BadParameter(f"no provider {provider!r} installed; providers: {', '.join(sorted(registry.providers))}",
                                 param_hint="PROVIDER")
    click.echo(docs.provider_markdown(provider, registry.providers[provider]), nl=False)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False), default=".")
def init(folder: str) -> None:
    """Write a starter pipeline file, FOLDER/pipelines/daily.yaml, to point at your own shops and accounts.

    Its warehouse, lake, raw zone and tokens go to FOLDER/data/. FOLDER defaults to the current folder.
    """
    from . import starter

    path = starter.write(folder)
    click.echo(f"wrote {path}: keep a block per shop or account, export the credentials it names, then "
               f"`shipetl validate {path}` and `shipetl check {path}` (README: Running it for real)")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder in which the package folder shipetl-NAME is created.")
def new_plugin(name: str, directory: str) -> None:
    """Write a pip-installable provider plugin package shipetl-NAME that passes its own tests."""
    from . import plugins, scaffold

    path = scaffold.create(name, directory, registry=plugins.load_registry())
    click.echo(f"created {path}; next: pip install -e '{path}[test]' && python -m pytest {path}")


@cli.command()
@click.argument("table", required=False)
def schema(table: str | None) -> None:
    """Print the canonical tables (or one TABLE): columns, types, nullability, descriptions."""
    from . import docs

    click.echo(docs.schema_text(table), nl=False)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table", show_default=True,
              help="table on a terminal; csv and json (lines) to stdout; parquet needs --out.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the result to this file.")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait while a run is committing.")
def sql(pipeline: str, query: str, fmt: str, out: str | None, wait: float) -> None:
    """Run a read-only SQL QUERY over the warehouse of PIPELINE (marts included: see README, Analytics)."""
    from . import query as query_mod

    query_mod.run(_load(pipeline), query, fmt, out, wait)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default="report.html", show_default=True)
def report(pipeline: str, out: str) -> None:
    """Write one self-contained HTML report (charts and tables, opens offline) of PIPELINE's warehouse."""
    from . import report as report_mod

    size = report_mod.write_report(_load(pipeline), out)
    click.echo(f"wrote {out} ({size / 1e6:.1f} MB)", err=True)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.option("--limit", default=20, show_default=True, callback=_positive)
def runs(pipeline: str, limit: int) -> None:
    """Show the run history: one line per source account per run."""
    from . import query as query_mod

    query_mod.run_history(_load(pipeline), limit)


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
def state(pipeline: str) -> None:
    """Show each source account's stored cursors; core's own (core.*) in words: `shipetl sql PIPELINE "select
    * from source_state"` shows them as stored."""
    from . import query as query_mod

    query_mod.show_state(_load(pipeline))


@cli.command()
@click.argument("pipeline")
@click.argument("target", metavar="SOURCE[/ACCOUNT]")
def auth(pipeline: str, target: str) -> None:
    """Link a source's accounts, or one of them: print each authorization link, store the token pair from
    the code pasted back."""
    from . import jobs, plugins

    if not Path(pipeline).is_file() and Path(target).is_file():  # the order README gave at first: SOURCE PIPELINE
        pipeline, target = target, pipeline
        click.echo(f"note: the pipeline file comes first: shipetl auth {pipeline} {target}", err=True)
    cfg = _load(click.Path(exists=True, dir_okay=False).convert(pipeline, None, None))
    for line in jobs.authorize(cfg, plugins.load_registry(), target, click.prompt):
        click.echo(line)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback only.", callback=_loopback)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--seed", default=42, show_default=True, help="Same seed, same data.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Multiplies the seeded data volume.")
@click.option("--latency-ms", default=0, show_default=True, type=click.IntRange(0), help="Delay added to every provider request.")
@click.option("--rate-429", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of requests answered 429.")
@click.option("--rate-5xx", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of requests answered 500 or 503 (half each).")
@click.option("--rate-truncate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of replies cut in half.")
def sandbox(host: str, port: int, seed: int, scale: float, latency_ms: int, rate_429: float, rate_5xx: float, rate_truncate: float) -> None:
    """Serve every installed provider's sandbox API (built-in and plugins') on loopback from deterministic data,
    with faults on request."""
    from . import plugins
    from .errors import ShipetlError
    from .sandbox import SandboxSettings, serve
    from .sandbox.faults import Faults

    registry = plugins.load_registry()
    faults = Faults(latency_ms=latency_ms, rate_429=rate_429, rate_5xx=rate_5xx, rate_truncate=rate_truncate, seed=seed)
    settings = SandboxSettings(host=host, port=port, seed=seed, scale=scale, faults=faults)
    announced = []

    def announce(url: str) -> None:  # called once the socket is bound and listening
        announced.append(url)
        click.echo(f"sandbox on {url}/ serving: {', '.join(sorted(registry.sandboxes))}", err=True)

    try:
        serve(registry.sandboxes, settings, on_ready=announce)
    except OSError as exc:
        if announced:
            raise
        reason = "already in use" if exc.errno == errno.EADDRINUSE else f"not available ({exc.strerror or exc})"
        raise ShipetlError(f"port {port} on {host} is {reason}; pick another with --port (0 picks a free one)") from None


DEMO_PIPELINE = "pipelines/demo.yaml"


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False), default=DEMO_PIPELINE)
@click.option("--seed", default=42, show_default=True)
def demo(pipeline: str, seed: int) -> None:
    """Start the sandbox, run PIPELINE against it (${SHIPETL_SANDBOX_URL}), stop it, print a query to try.

    PIPELINE defaults to pipelines/demo.yaml in the current folder: run it from a clone's top folder.
    """
    from . import demo as demo_mod
    from . import progress as progress_mod

    if not Path(pipeline).is_file():
        raise click.BadParameter(f"no file {pipeline}" + (
            ": the demo pipeline comes with shipetl's repository (run `make demo` in a clone of it); to start a "
            "pipeline of your own, `shipetl init`" if pipeline == DEMO_PIPELINE else ""), param_hint="PIPELINE")

    with progress_mod.display() as tick:
        result, cfg = demo_mod.run_demo(pipeline, seed, progress=tick)
    _render_summary(result)
    click.echo(demo_mod.closing_words(cfg))
    sys.exit(130 if result.interrupted else 0 if result.ok else 1)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="shipetl")
