"""Builds the plugin manager from the ``shipetl`` entry-point group and fills the registry.

One way in: built-in providers and the built-in ``duckdb`` destination are entry points of this same
group, like any ``pip install``-ed plugin. A plugin that fails to import, has a bad hook implementation,
targets another hook API version or raises inside a hook is recorded with its package and the reason,
and left out; the others load. ``SHIPETL_PLUGINS=a,b`` limits loading to those names;
``SHIPETL_TRACE_HOOKS=1`` logs every hook call.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .errors import PluginError
from .log import get_logger
from .registry import PluginInfo, Registry

GROUP = "shipetl"
# The register_* hooks in the order load_registry calls them, each with how to make the ``register`` callback
# a plugin is handed: (registry, plugin name) -> callback.
_REGISTER_CALLBACKS: dict[str, Callable[[Registry, str], Callable[..., None]]] = {
    "register_providers": lambda registry, p: lambda provider: registry.add_provider(p, provider),
    "register_status_maps": lambda registry, p: lambda namespace, table, override=False: registry.add_status_map(
        p, namespace, table, override=override),
    "register_destinations": lambda registry, p: lambda name, factory: registry.add_destination(p, name, factory),
    "register_sandboxes": lambda registry, p: lambda name, factory: registry.add_sandbox(p, name, factory),
}
REGISTER_HOOKS = tuple(_REGISTER_CALLBACKS)


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, info: PluginInfo, load: Callable[[], object]) -> None:
    """Import one plugin and register it; any failure is written on ``info``, never raised."""
    try:
        module = load()
        pm.register(module, name=info.name)
    except pluggy.PluginValidationError as exc:
        info.error = f"bad hook implementation: {exc}"
    except Exception as exc:  # a broken plugin must not stop the others
        info.error = f"failed to load: {type(exc).__name__}: {exc}"
        if pm.get_plugin(info.name) is not None:
            pm.unregister(name=info.name)


def _load_entry_points(pm: pluggy.PluginManager, registry: Registry) -> None:
    allow = {n.strip() for n in os.environ.get("SHIPETL_PLUGINS", "").split(",") if n.strip()}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if allow and ep.name not in allow:
            continue
        dist = ep.dist
        info = PluginInfo(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None)
        if ep.name in registry.plugins:
            first = registry.plugins[ep.name]
            info.name = f"{ep.name}#{sum(n.split('#')[0] == ep.name for n in registry.plugins) + 1}"
            info.error = (f"entry point name {ep.name!r} is already taken by {first.label}; "
                          f"uninstall one of the two packages")
            registry.plugins[info.name] = info
            continue
        registry.plugins[ep.name] = info
        _register(pm, info, ep.load)


def _check_pending(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Unregister plugins with a hook implementation no spec knows (a misspelt hook name)."""
    while True:  # check_pending names one offender at a time
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            registry.plugins[pm.get_name(exc.plugin)].error = f"bad hook implementation: {exc}"
            pm.unregister(exc.plugin)


def _check_versions(pm: pluggy.PluginManager, registry: Registry) -> None:
    for impl in pm.hook.shipetl_api_version.get_hookimpls():
        info = registry.plugins[impl.plugin_name]
        try:
            version = impl.function()
        except Exception as exc:
            version, info.error = None, f"shipetl_api_version raised {type(exc).__name__}: {exc}"
        if version is not None and version != hookspecs.API_VERSION:
            info.error = (f"targets hook API version {version!r}; this shipetl speaks version "
                          f"{hookspecs.API_VERSION}: upgrade the plugin or shipetl")
        if info.error:
            pm.unregister(name=impl.plugin_name)


def _prepare(pm: pluggy.PluginManager, registry: Registry) -> None:
    _check_pending(pm, registry)
    _check_versions(pm, registry)
    if os.environ.get("SHIPETL_TRACE_HOOKS"):
        log = get_logger()
        pm.trace.root.setwriter(lambda msg: log.debug("hook_trace", message=msg.rstrip()))
        pm.enable_tracing()


def hookspec_functions() -> list[Callable[..., object]]:
    """Every hook spec, in the order it appears in :mod:`shipetl.hookspecs` (the order a run reaches it)."""
    specs = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "shipetl_spec")]
    return sorted(specs, key=lambda f: f.__code__.co_firstlineno)


def get_plugin_manager() -> tuple[pluggy.PluginManager, Registry]:
    """Make the manager, add the specs, load the entry points, check them; nothing happens at import."""
    pm, registry = _new_manager(), Registry()
    _load_entry_points(pm, registry)
    _prepare(pm, registry)
    return pm, registry


def _fail(registry: Registry, plugin: str, error: str, hook: str) -> None:
    registry.plugins[plugin].error = error
    registry.forget(plugin)
    get_logger().warning("plugin_failed", plugin=registry.plugins[plugin].label, hook=hook, error=error)


def _fill(pm: pluggy.PluginManager, registry: Registry) -> Registry:
    """Call every register_* hook plugin by plugin, so a failure is pinned on its plugin alone."""
    for hook, make_register in _REGISTER_CALLBACKS.items():
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if registry.plugins[impl.plugin_name].error:
                continue
            try:
                # Pass only what the implementation declares: specs grow by adding arguments.
                offered = {"register": make_register(registry, impl.plugin_name)}
                impl.function(**{name: offered[name] for name in impl.argnames})
            except PluginError as exc:
                _fail(registry, impl.plugin_name, f"{hook} failed: {exc}", hook)
            except Exception as exc:
                _fail(registry, impl.plugin_name, f"{hook} raised {type(exc).__name__}: {exc}", hook)
    for plugin, error in registry.apply_status_maps().items():
        _fail(registry, plugin, f"register_status_maps failed: {error}", "register_status_maps")
    return registry


def load_registry() -> Registry:
    """Everything the installed plugins contribute: providers, status tables, destinations, sandboxes."""
    return _fill(*get_plugin_manager())


def registry_from_modules(modules: Mapping[str, object], distribution: str | None = None) -> Registry:
    """A registry built from plugin modules given by name, not from entry points.

    For tests (``shipetl.testing`` loads the plugin under test this way, installed or not). The
    modules go through the same checks as installed plugins: hook signatures, API version, hooks.
    """
    pm, registry = _new_manager(), Registry()
    for name, module in modules.items():
        info = PluginInfo(name, getattr(module, "__name__", repr(module)), distribution)
        registry.plugins[name] = info
        _register(pm, info, lambda module=module: module)
    _prepare(pm, registry)
    return _fill(pm, registry)


def report(registry: Registry) -> str:
    """The text of ``shipetl plugins``: each plugin with its package and what it gave, broken ones with
    the reason, then which plugin supplied each status namespace."""
    lines = []
    rows = [(info, f"{info.distribution} {info.version or ''}".strip() if info.distribution else "-")
            for info in registry.plugins.values()]
    # Columns as wide as their longest entry (at least the built-ins' widths), so a long name never shifts a row.
    name_w = max([14, *(len(info.name) + 1 for info, _ in rows)])
    package_w = max([24, *(len(package) + 1 for _, package in rows)])
    module_w = max([28, *(len(info.module) + 1 for info, _ in rows)])
    for info, package in rows:
        lines.append(f"{info.name:<{name_w}} {package:<{package_w}} {info.module:<{module_w}} "
                     + ("ok" if info.ok else "BROKEN"))
        if info.ok:
            lines.extend(f"    {item}" for item in info.provides)
        else:
            lines.append(f"    error: {info.error}")
    suppliers = registry.status_suppliers()
    if suppliers:
        lines.append("")
        lines.append("status maps (namespace: supplied by)")
        lines.extend(f"    {ns}: {', '.join(plugins)}" for ns, plugins in suppliers.items())
    broken = registry.broken()
    if broken:
        lines.append("")
        lines.append(f"{len(broken)} plugin(s) not loaded: {', '.join(p.label for p in broken)}")
    return "\n".join(lines) + "\n"
