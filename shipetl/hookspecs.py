"""Every hook of shipetl, in the order a run reaches it; the docstrings are the plugin reference.

A plugin is a module listed under the ``shipetl`` entry-point group whose functions carry
``@shipetl.hookimpl``. Each register_* hook hands the plugin a ``register`` callback; the host, not the
plugin, checks names, reports clashes and names the plugin at fault. Implement only the hooks you need,
and declare only the arguments you use: specs grow by adding arguments, never by changing them.

``plugins/README.md`` carries a reference generated from this module (``python -m shipetl.docs``
rewrites it; a test fails when the two differ).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .config import PipelineConfig
    from .provider import Provider
    from .runs import SourceRun
    from .transform import TransformResult

API_VERSION = 1
hookspec = pluggy.HookspecMarker("shipetl")
hookimpl = pluggy.HookimplMarker("shipetl")


class RegisterProvider(Protocol):
    def __call__(self, provider: type[Provider]) -> None: ...


class RegisterStatusMap(Protocol):
    def __call__(self, namespace: str, table: Mapping[str, str | tuple[str, bool]], *, override: bool = False) -> None: ...


class Destination(Protocol):
    """Where one run's rows go. Built once per run by a destination factory; used from several threads."""

    def commit(self, staged: TransformResult, run: SourceRun, cursors: dict[str, Any]) -> dict[str, int]:
        """Load one source account's staged rows with its cursors and run record, all or nothing.

        ``staged.con`` is the DuckDB connection whose temp views (``transform.staged_table(name)``,
        one per name in ``staged.staged``) hold the rows. An entity may come twice in one run: of its rows,
        ``duckdb`` keeps the one with the greatest ``__order`` (the raw file's place; the same rows with that
        column: ``transform.staged_in_order(name)``), then first by the table's ``newest_first``.
        Returns rows loaded per table; fills ``run.loaded``.
        ``run.unmapped`` arrives with the staged rows' unmapped codes, and ``run.counters`` with what the
        mappings' counters counted; a destination that deduplicates may narrow both to the rows it loaded
        (``transform.staged_unmapped(name)`` and ``transform.staged_counters(name)`` have their keys).
        ``run.status`` is ``ok``, or ``interrupted`` for a run stopped early: its rows are those fetched until
        then, and ``cursors`` those of the provider's last checkpoint (``{}``: leave them as they are).
        A destination that expires open shipments gone silent (``duckdb`` does, after ``run.expire_after_days``)
        leaves those in ``run.unheard`` open: their latest poll failed, so their news is unknown.
        """

    def record_failure(self, run: SourceRun) -> None:
        """Store the run record of a source that failed; its rows and cursors stay as they were.

        The run after a killed one calls it for each account the killed run had not finished (``status`` failed,
        ``error`` starting ``killed:``); the kill may have come just after that account's commit, whose own
        record, if stored, stands.
        """

    def start_state(self, source: str, provider: str, account_id: str) -> tuple[dict[str, Any], Sequence[dict[str, Any]]]:
        """What the last commit of one source account left: its cursors (as ``commit`` got them) and its
        open shipments (the latest ``shipments`` row of each one not final, as a dict of columns: a list,
        or any sequence, such as :class:`shipetl.snapshots.Snapshots` over an Arrow table, which keeps a
        large account's rows out of Python objects). ``({}, [])`` before the first commit. Read before
        extraction, so a run goes on where the last ended.
        """

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Rows of a read-only SQL query over what was loaded (``[]`` before the first commit); providers
        reach it as ``ctx.query`` (for example, AliExpress order ids from a user's own SQL).
        Raise ``ConfigError`` saying why when the query fails."""


DESTINATION_METHODS = ("commit", "record_failure", "start_state", "query")


class RegisterDestination(Protocol):
    def __call__(self, name: str, factory: Callable[[PipelineConfig], Destination]) -> None: ...


class RegisterSandbox(Protocol):
    def __call__(self, name: str, factory: Callable[..., object]) -> None: ...


# -- start-up: called once each, after every plugin has loaded ------------------------------------


@hookspec
def shipetl_api_version() -> int:
    """Return the hook API version the plugin was written for (this release: ``1``).

    Called first, for every plugin, right after it is imported. A plugin answering another version
    is reported as incompatible, with its package name, in ``shipetl plugins`` and in the run summary,
    and is not used; other plugins go on. A plugin that does not implement it is assumed to target
    the current version.
    """


@hookspec
def register_providers(register: RegisterProvider) -> None:
    """Add provider classes: sources of orders, shipments and tracking events.

    Called once per command that needs providers, before the sources are checked against them: a source's
    ``provider:`` key must name a registered provider, and its options are validated by that provider's model.
    Every plugin's answer counts; none wins over another.

    :param register: call ``register(ProviderSubclass)`` per provider. ``ProviderSubclass.name`` is the
        name users write in pipeline YAML; a name another plugin already registered marks the later
        plugin broken, naming both.
    """


@hookspec
def register_status_maps(register: RegisterStatusMap) -> None:
    """Add tables that map raw carrier or provider codes to canonical tracking statuses.

    Called once, after providers are registered and before the first source runs, plugin by plugin in
    name order. A plugin may contribute only status maps, without any provider: installing it changes
    the canonical status of the codes it maps from the next run on.

    :param register: call ``register(namespace, {raw_code: status})`` per namespace (a provider name
        such as ``shipengine``, or a carrier code such as ``usps``). A value may be
        ``(status, is_final)`` where a status is final for some codes only (``exception``). A raw code
        given two different statuses by two plugins marks the later plugin broken, naming both, unless
        it passes ``override=True``, which refines the mapping on purpose (the override wins whatever
        the load order); ``shipetl plugins`` shows which plugin supplied each namespace.
    """


@hookspec
def register_destinations(register: RegisterDestination) -> None:
    """Add destinations: where a run loads its rows, cursors and run records.

    Called once at start-up. A pipeline picks one with its top-level ``destination:`` key (default
    ``duckdb``, the built-in DuckDB + Parquet warehouse, itself registered through this hook).

    :param register: call ``register(name, factory)``; ``factory(pipeline)`` gets the validated
        :class:`~shipetl.config.PipelineConfig` and returns a :class:`Destination`: ``commit(staged, run,
        cursors) -> dict[str, int]`` (rows loaded per table), ``record_failure(run)``,
        ``start_state(source, provider, account_id) -> (cursors, open_shipments)`` and
        ``query(sql, params)``. The factory is called once per run; the methods are called once per
        source account, possibly from several threads. A name another plugin already registered marks
        the later plugin broken.
    """


@hookspec
def register_sandboxes(register: RegisterSandbox) -> None:
    """Add a provider's fake API to ``shipetl sandbox``.

    Called when the registry is built, before the sandbox starts.

    :param register: call ``register(name, factory)``; ``factory(settings)`` gets the
        :class:`~shipetl.sandbox.SandboxSettings` and returns an ASGI app mounted at ``/<name>``, so
        the provider's ``base_url`` in the sandbox is ``http://127.0.0.1:PORT/<name>``.
    """
