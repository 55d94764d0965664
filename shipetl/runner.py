"""One run: each source account, isolated, goes extract -> raw zone -> map/transform -> load.

A source that fails (bad credentials, an API down past its retries, a plugin bug) is recorded with one
line saying why; the other sources go on. Sources run in parallel up to ``run.max_parallel_sources``;
their commits take turns on the warehouse.
"""

from __future__ import annotations

import shutil
import threading
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import polling, runlock, transform
from .config import PipelineConfig
from .context import SourceContext, as_utc
from .errors import PluginError, RunStopped, ShipetlError
from .hookspecs import DESTINATION_METHODS, Destination
from .jobs import AccountJob, pii_settings, plan, source_context
from .log import get_logger
from .plugins import load_registry
from .provider import Page
from .rawzone import RawZoneWriter, prune, safe_name
from .redact import redact_text
from .registry import Registry
from .runs import INTERRUPTED, SourceRun, account_label, new_run_id
from . import storage


TRANSFORM_WORKERS = 2  # raw files mapped at once per source account


@dataclass
class RunResult:
    """Every source account's outcome in one run."""

    run_id: str
    sources: list[SourceRun] = field(default_factory=list)
    broken_plugins: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sources)


def _record_counts(run: SourceRun, result: transform.TransformResult, ctx: SourceContext, log) -> None:
    run.extracted = {t: c.mapped for t, c in result.tables.items()}
    run.rejected = {t: c.rejected for t, c in result.tables.items() if c.rejected}
    for (table, code), n in result.unmapped.items():
        run.unmapped[f"{table}:{code}"] = n  # the destination keeps those of the rows it loads
    for name, n in result.unknown_countries.items():
        log.warning("country_unknown", value=name, rows=n)
    run.counters = dict(ctx.counters + result.counters)
    if result.unknown_countries:
        run.counters["unknown_countries"] = sum(result.unknown_countries.values())


def _keep_unheard(ctx: SourceContext, run: SourceRun, cursors: dict[str, Any]) -> dict[str, Any]:
    """``cursors`` with core's ``core.unheard`` cursor after this run, and in ``run.unheard`` the shipments its commit
    must not expire: those whose latest poll failed, in this run or in one whose turn has not come round again."""
    asked = None if run.status == INTERRUPTED else polling.asked_all_since(run.started_at, cursors)
    before = ctx.cursor(polling.UNHEARD_CURSOR)
    kept = polling.still_unheard(before, ctx.unheard, run.started_at, asked)
    run.unheard = {shipment_id for shipment_id, _ in kept}
    return {**cursors, polling.UNHEARD_CURSOR: kept} if kept or before else cursors


TIMEZONE_CURSOR = "core.timezone"  # the zone the account's last run read naive local times in


def _warn_if_zone_changed(ctx: SourceContext, log) -> None:
    """Say so when this run reads local times in another zone than the last: scans read again get new instants."""
    before = ctx.cursor(TIMEZONE_CURSOR)
    if before is not None and ctx.timezone is not None and before != ctx.timezone:
        log.warning("timezone_changed", before=before, now=ctx.timezone,
                    hint="scans read again are stored once more at their new instants (an event's id has its instant), "
                         "beside those loaded before; rows loaded before keep their instants")


def _keep_timezone(ctx: SourceContext, cursors: dict[str, Any]) -> dict[str, Any]:
    """``cursors`` with the zone this run read local times in, when it is not the one stored already."""
    if ctx.timezone is None or ctx.cursor(TIMEZONE_CURSOR) == ctx.timezone:
        return cursors
    return {**cursors, TIMEZONE_CURSOR: ctx.timezone}


def interrupted_line(checkpoint_moved: bool) -> str:
    """The summary's note for a source stopped early, which loads the pages it had fetched."""
    then = ("the next run goes on from its last checkpoint" if checkpoint_moved
            else "no checkpoint moved its cursors, so the next run fetches its window again")
    return f"interrupted (Ctrl-C or SIGTERM): the pages fetched until then are loaded; {then}"


@contextmanager
def _stoppable(pages: Iterable[Page]) -> Iterator[Iterator[Page]]:
    """The provider's pages; a generator left unfinished is closed, so its ``finally`` blocks close clients."""
    iterator = iter(pages)
    try:
        yield iterator
    finally:
        if isinstance(iterator, Generator):
            iterator.close()


def _extract_and_transform(pipeline: PipelineConfig, provider, ctx: SourceContext, run: SourceRun,
                           transformer: transform.Transformer, progress, stop: threading.Event) -> bool:
    """Write every page to the raw zone; each raw file is mapped by a worker thread as soon as it is closed.

    DuckDB releases the GIL, so mapping overlaps with fetching; two workers keep both cores busy when
    the raw zone closes files faster than one worker maps them. Once ``stop`` is set the extraction ends
    after the page in hand, or at once if it waits to retry or for the rate limit (its requests not yet
    answered are dropped); returns whether it was stopped.
    """
    stopped = False
    with ThreadPoolExecutor(max_workers=TRANSFORM_WORKERS, thread_name_prefix=f"transform-{run.label}") as mapper:
        pending = []
        on_close = lambda stream, path: pending.append(mapper.submit(transformer.add, stream, path, len(pending)))  # noqa: E731
        with RawZoneWriter(Path(pipeline.warehouse.raw), run.provider, run.account_id, run.run_id, run.started_at,
                           on_close=on_close) as raw:
            try:
                with _stoppable(provider.extract(ctx)) as pages:
                    for page in pages:
                        raw.write(page)
                        if progress:
                            progress(run.label, raw.pages)
                        if stop.is_set():
                            stopped = True
                            break
            except RunStopped:  # the stop ended a wait for a retry or the rate limit
                stopped = True
            run.pages = raw.pages
        for future in pending:
            future.result()  # a mapping error fails the source here
    return stopped


def _warn_if_renamed(pipeline: PipelineConfig, destination: Destination, run: SourceRun, log) -> None:
    """On a source account's first run (no cursors, no run that went through), name the accounts of its provider
    that sources no longer in the pipeline loaded: a source renamed starts over under a new account id and the
    old one's parcels stay open for ever."""
    names = [s.name for s in pipeline.sources]
    try:
        gone = destination.query(
            f"SELECT DISTINCT source, account_id FROM runs WHERE provider = ? AND status = 'ok' AND account_id <> ? "
            f"AND source NOT IN ({', '.join('?' * len(names))}) AND NOT EXISTS (SELECT 1 FROM runs WHERE source = ? "
            f"AND account_id = ? AND status = 'ok') ORDER BY 1, 2",
            [run.provider, run.account_id, *names, run.source, run.account_id])
    except ShipetlError:  # a destination without a runs table: nothing to compare with
        return
    if gone:
        log.warning("source_maybe_renamed", loaded_before=[f"{source} (account_id {account})" for source, account in gone],
                    hint=f"this is the first run of {run.label}; if it is one of those sources renamed, give it its old "
                         f"account_id in options (account_id: ...) so its rows continue that account's instead of "
                         f"starting a second copy")


def error_line(exc: Exception, provider: str) -> str:
    """The one line a source's failure is reported with: shipetl's own message, or the plugin's bug by name;
    secrets masked, since the text may quote what an API echoed back (a key it calls unknown)."""
    if isinstance(exc, ShipetlError):
        return redact_text(str(exc).splitlines()[0])
    return redact_text(f"internal error in provider {provider}: {type(exc).__name__}: {exc} (a reply the plugin cannot "
                       f"read: check the source's base_url; if it is right, report this line and the log's traceback "
                       f"to the plugin's author)")


def _spill_root(pipeline: PipelineConfig) -> Path:
    """Where runs stage their typed rows and DuckDB spills, one folder per run, beside the warehouse."""
    return Path(pipeline.warehouse.path).parent / ".staging"


# A run's spill folder older than this belongs to a run that was killed: no run lasts a day.
STALE_SPILL = timedelta(days=1)


def _remove_stale_spills(pipeline: PipelineConfig) -> None:
    """Delete the spill folders killed runs left behind (a finished run deletes its own)."""
    root = _spill_root(pipeline)
    cutoff = datetime.now().timestamp() - STALE_SPILL.total_seconds()
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def _prune_raw(pipeline: PipelineConfig, run: SourceRun, log) -> None:
    """Delete the account's raw pages older than ``warehouse.raw_keep_days``, once its run has committed."""
    keep = pipeline.warehouse.raw_keep_days
    if not keep:
        return
    try:
        removed = prune(Path(pipeline.warehouse.raw), run.provider, run.account_id, (run.started_at - timedelta(days=keep)).date())
    except OSError as exc:  # the rows are committed: a folder left behind is the next run's to delete
        log.warning("raw_prune_failed", error=str(exc))
        return
    if removed:
        log.info("raw_pruned", days=removed, keep_days=keep)


UNMAPPED_HINT = ("loaded as status unknown; give them a status under the source's status_map in the pipeline "
                 "file (status_map: {<table>: {'<code>' or '<carrier_code>/<code>': <status>}}), or with a status "
                 "map plugin")


def _log_unmapped(run: SourceRun, log) -> None:
    """One warning per table naming every status code no table knows among the rows loaded, most rows first."""
    by_table: dict[str, dict[str, int]] = {}
    for key, n in sorted(run.unmapped.items(), key=lambda item: (-item[1], item[0])):
        table, _, code = key.partition(":")
        by_table.setdefault(table, {})[code] = n
    for table, codes in by_table.items():
        log.warning("status_unmapped", table=table, rows=sum(codes.values()), codes=codes, hint=UNMAPPED_HINT)


def _fail(destination: Destination, run: SourceRun, exc: Exception, log) -> None:
    run.status, run.finished_at = "failed", datetime.now(timezone.utc)
    run.error = error_line(exc, run.provider)
    run.unmapped = {}  # counted among the rows loaded, and a failed source loads none
    if isinstance(exc, ShipetlError):
        log.error("source_failed", error=run.error, error_type=type(exc).__name__)
    else:
        log.error("source_failed", error=run.error, traceback="".join(traceback.format_exception(exc)))
    _record(destination, run, log)


def _record(destination: Destination, run: SourceRun, log) -> None:
    """Store a failed source's run record; a warehouse that cannot take it leaves the log line as all there is."""
    try:
        destination.record_failure(run)
    except Exception as exc:  # an unwritable or busy warehouse
        log.error("run_record_failed", error=error_line(exc, run.provider))


KILLED = ("killed: the run stopped before this source finished (SIGKILL, the out-of-memory killer, a reboot or a "
          "second Ctrl-C); nothing of it was loaded, and a later run fetches it again")


def _record_killed(pipeline: PipelineConfig, destination: Destination, killed: runlock.KilledRun) -> None:
    """Record each source account a killed run left unfinished as failed (``KILLED``), and delete that run's spill folder."""
    log = get_logger(run_id=killed.run_id)
    log.warning("previous_run_killed", holder=killed.holder, sources=[account_label(s, a) for s, _, a in killed.accounts],
                hint="these sources had not finished when it was killed; one it stopped before its commit loaded nothing "
                     "(recorded as failed, killed) and this run fetches it again. If nothing stopped it on purpose, look "
                     "for its pid and the out-of-memory killer in the system log (dmesg)")
    for source, provider, account_id in killed.accounts:
        run = SourceRun(killed.run_id, source, provider, account_id, killed.started_at, status="failed", error=KILLED)
        _record(destination, run, log)
    shutil.rmtree(_spill_root(pipeline) / killed.run_id, ignore_errors=True)


def _not_started(job: AccountJob, run_id: str) -> SourceRun:
    run = SourceRun(run_id, job.source.name, job.provider_cls.name, job.account_id, datetime.now(timezone.utc))
    run.status, run.error = "failed", "not started: the run was interrupted (Ctrl-C or SIGTERM)"
    return run


def _run_account(pipeline: PipelineConfig, registry: Registry, destination: Destination, job: AccountJob, run_id: str,
                 since, until, progress, stop: threading.Event, lock: runlock.RunLock) -> SourceRun:
    """Extract, transform and commit one account; any failure is recorded on its SourceRun, never raised. Once its
    run record is stored (by the commit, or as a failure), ``lock`` notes the account finished."""
    if stop.is_set():  # asked to stop before its turn came
        return _not_started(job, run_id)
    src, provider_cls = job.source, job.provider_cls
    run = SourceRun(run_id, src.name, provider_cls.name, job.account_id, datetime.now(timezone.utc))
    log = get_logger(source=run.label, run_id=run_id)
    spill = _spill_root(pipeline) / run_id / safe_name(run.label)
    try:
        cursors, open_shipments = destination.start_state(src.name, provider_cls.name, job.account_id)
        if not cursors:
            _warn_if_renamed(pipeline, destination, run, log)
        ctx = source_context(pipeline, job, run.label, log, cursors=cursors, open_shipments=open_shipments,
                             since=since, until=until, query=destination.query, stop=stop, started_at=run.started_at)
        log.info("source_started", open_shipments=len(open_shipments))
        _warn_if_zone_changed(ctx, log)
        pii, pii_key = pii_settings(src, provider_cls)
        con = transform.connect(pipeline.warehouse.memory_limit, spill, registry.statuses, pii=pii, pii_key=pii_key)
        transformer = transform.Transformer(con, provider_cls.streams, provider=provider_cls.name,
                                            account_id=job.account_id, run_id=run_id,
                                            extracted_at=run.started_at, timezone=ctx.timezone,
                                            staging=spill / "staged", status_map=src.status_map)
        try:
            with run.timed("fetch_and_map"):
                stopped = _extract_and_transform(pipeline, provider_cls(src.name, job.options), ctx, run, transformer,
                                                 progress, stop)
                result = transformer.finish()
            _record_counts(run, result, ctx, log)
            if stopped:  # what was fetched loads, with the cursors of the provider's last checkpoint
                run.status, run.error = INTERRUPTED, interrupted_line(ctx.checkpoint_moved())
                cursors = ctx.checkpointed or {}
                log.warning("source_interrupted", pages=run.pages, checkpoint=ctx.checkpointed is not None)
            else:
                run.status, cursors = "ok", ctx.new_cursors
            cursors = _keep_timezone(ctx, _keep_unheard(ctx, run, cursors))
            run.finished_at = datetime.now(timezone.utc)
            destination.commit(result, run, cursors)
            lock.finished(src.name, job.account_id)
            _log_unmapped(run, log)
            _prune_raw(pipeline, run, log)
        finally:
            transformer.close()
            con.close()
    except Exception as exc:  # one source's failure must not take the others down
        known = (storage.write_error(pipeline, exc)
                 or transform.memory_error(exc, pipeline.warehouse.memory_limit, pipeline.path))
        _fail(destination, run, known or exc, log)
        lock.finished(src.name, job.account_id)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return run


def destination_factory(pipeline: PipelineConfig, registry: Registry):
    """The installed destination ``pipeline`` names; an unknown one is a ConfigError at its line, listing those installed."""
    try:
        return registry.destination(pipeline.destination)
    except PluginError as exc:
        raise pipeline.problem("destination", message=str(exc)) from None


def _destination(pipeline: PipelineConfig, registry: Registry) -> Destination:
    """The pipeline's destination for this run; one lacking part of the contract is refused by name."""
    destination = destination_factory(pipeline, registry)(pipeline)
    missing = [name for name in DESTINATION_METHODS if not callable(getattr(destination, name, None))]
    if missing:
        raise PluginError(f"destination {pipeline.destination!r} has no {', '.join(missing)} method "
                          "(a destination needs all of: " + ", ".join(DESTINATION_METHODS) + "; see shipetl.hookspecs.Destination)")
    return destination


def run_pipeline(pipeline: PipelineConfig, *, since: datetime | None = None, until: datetime | None = None,
                 only: Sequence[str] = (), registry: Registry | None = None,
                 progress: Callable[[str, int], None] | None = None, stop: threading.Event | None = None) -> RunResult:
    """Run every enabled source of ``pipeline`` (or those in ``only``) and return what each did.

    Setting ``stop`` (from another thread: a scheduler's cancel, say) ends the run as Ctrl-C does: each
    source under way loads what it fetched with the cursors of its last checkpoint, none starts anew.

    :raises RunInProgressError: another run of the same warehouse is under way.
    """
    registry = registry or load_registry()
    destination = _destination(pipeline, registry)
    if problems := storage.problems(pipeline):
        raise config_mod.ConfigError("\n".join(problems))
    with runlock.hold(pipeline.warehouse.path) as (lock, killed):
        if killed:
            _record_killed(pipeline, destination, killed)
            lock.end()  # recorded: the next run must not record them again
        return _run_pipeline(pipeline, destination, lock, since=since, until=until, only=only, registry=registry,
                             progress=progress, stop=stop or threading.Event())


def _run_pipeline(pipeline: PipelineConfig, destination: Destination, lock: runlock.RunLock, *, since: datetime | None,
                  until: datetime | None, only: Sequence[str], registry: Registry,
                  progress: Callable[[str, int], None] | None, stop: threading.Event) -> RunResult:
    run_id = new_run_id()
    result = RunResult(run_id, broken_plugins={p.label: p.error for p in registry.broken()})
    now = datetime.now(timezone.utc)
    # Nobody can fetch the future: an --until past now would let a cursor jump over days not yet fetched.
    until = min(as_utc(until), now) if until else now
    since = as_utc(since) if since else None
    _remove_stale_spills(pipeline)
    jobs, refused = plan(pipeline, registry, only)
    for src, exc in refused:
        run = SourceRun(run_id, src.name, src.provider, src.name, datetime.now(timezone.utc))
        _fail(destination, run, exc, get_logger(source=src.name, run_id=run_id))
        result.sources.append(run)
    get_logger(run_id=run_id).info("run_started", sources=len(jobs))
    lock.begin(run_id, now, [(job.source.name, job.provider_cls.name, job.account_id) for job in jobs])
    pool = ThreadPoolExecutor(max_workers=max(1, pipeline.run.max_parallel_sources))
    try:
        futures = [pool.submit(_run_account, pipeline, registry, destination, job, run_id, since, until, progress, stop,
                               lock) for job in jobs]
        for job, future in zip(jobs, futures):
            future.add_done_callback(lambda _, job=job: lock.finished(job.source.name, job.account_id))
        try:
            # Short waits: the signal may land on a worker thread, and the main thread sees it only between waits.
            while wait(futures, timeout=0.25).not_done and not stop.is_set():
                pass
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM
            stop.set()
        if stop.is_set():  # stop fetching, load what was fetched, let a commit under way finish, start nothing new
            result.interrupted = True
            get_logger(run_id=run_id).warning("run_interrupted", hint="each source under way loads what it fetched; "
                                              "a second Ctrl-C or SIGTERM stops at once, loading nothing more")
        cancelled = [future.cancel() for future in futures]  # before waiting, so no queued source starts
        for job, future, never_started in zip(jobs, futures, cancelled):
            result.sources.append(_not_started(job, run_id) if never_started else future.result())
    except BaseException:  # a second Ctrl-C or SIGTERM: the caller leaves without waiting for the commits under way
        lock.freeze()  # the note stays as it is, for the next run to record what did not finish
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    lock.end()
    shutil.rmtree(_spill_root(pipeline) / run_id, ignore_errors=True)
    get_logger(run_id=run_id).info("run_finished", ok=result.ok)
    return result
