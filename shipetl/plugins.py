"""Builds the plugin manager from the ``shipetl`` entry-point group and fills the registry.

One way in: built-in providers are entry points of this same group, like any ``pip install``-ed plugin.
A plugin that fails to import, targets another hook API version or raises inside a hook is recorded
with the reason and left out; the others load. ``SHIPETL_PLUGINS=a,b`` limits loading to those names;
``SHIPETL_TRACE_HOOKS=1`` logs every hook call.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .errors import PluginError
from .log import get_logger
from .registry import PluginInfo, Registry

GROUP = "shipetl"


def _load_entry_points(pm: pluggy.PluginManager, registry: Registry) -> None:
    allow = {n.strip() for n in os.environ.get("SHIPETL_PLUGINS", "").split(",") if n.strip()}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if allow and ep.name not in allow:
            continue
        dist = ep.dist
        info = PluginInfo(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None)
        registry.plugins[ep.name] = info
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except pluggy.PluginValidationError as exc:
            info.error = f"bad hook implementation: {exc}"
        except Exception as exc:  # a broken plugin must not stop the others
            info.error = f"failed to load: {type(exc).__name__}: {exc}"
            if pm.get_plugin(ep.name) is not None:
                pm.unregister(name=ep.name)


def _check_versions(pm: pluggy.PluginManager, registry: Registry) -> None:
    for impl in pm.hook.shipetl_api_version.get_hookimpls():
        info = registry.plugins[impl.plugin_name]
        try:
            version = impl.function()
        except Exception as exc:
            version, info.error = None, f"shipetl_api_version raised {type(exc).__name__}: {exc}"
        if version is not None and version != hookspecs.API_VERSION:
            info.error = f"targets hook API version {version}; this shipetl speaks version {hookspecs.API_VERSION}"
        if info.error:
            pm.unregister(name=impl.plugin_name)


def _call_each(pm: pluggy.PluginManager, registry: Registry, hook: str, make_register) -> None:
    """Call one register_* hook plugin by plugin so a failure is pinned on its plugin alone."""
    for impl in getattr(pm.hook, hook).get_hookimpls():
        info = registry.plugins[impl.plugin_name]
        if info.error:
            continue
        try:
            impl.function(register=make_register(impl.plugin_name))
        except Exception as exc:
            info.error = f"{hook} failed: {exc}" if isinstance(exc, PluginError) else f"{hook} raised {type(exc).__name__}: {exc}"
            get_logger().warning("plugin_failed", plugin=impl.plugin_name, hook=hook, error=info.error)


def get_plugin_manager() -> tuple[pluggy.PluginManager, Registry]:
    """Make the manager, add the specs, load the entry points, check them; nothing happens at import."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    _load_entry_points(pm, registry)
    while True:  # check_pending names one offender at a time: a misspelt hook name
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            registry.plugins[pm.get_name(exc.plugin)].error = f"bad hook implementation: {exc}"
            pm.unregister(exc.plugin)
    _check_versions(pm, registry)
    if os.environ.get("SHIPETL_TRACE_HOOKS"):
        log = get_logger()
        pm.trace.root.setwriter(lambda msg: log.debug("hook_trace", message=msg.rstrip()))
        pm.enable_tracing()
    return pm, registry


def load_registry() -> Registry:
    """Everything the installed plugins contribute: providers, status tables, sandboxes."""
    pm, registry = get_plugin_manager()
    _call_each(pm, registry, "register_providers", lambda p: lambda provider: registry.add_provider(p, provider))
    _call_each(
        pm, registry, "register_status_maps",
        lambda p: lambda namespace, table, override=False: registry.statuses.add(p, namespace, table, override=override),
    )
    _call_each(pm, registry, "register_sandboxes", lambda p: lambda name, factory: registry.add_sandbox(p, name, factory))
    for p in registry.plugins.values():
        for ns, suppliers in registry.statuses.suppliers.items():
            if p.name in suppliers:
                p.provides.append(f"statuses:{ns}")
    return registry
