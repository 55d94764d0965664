"""Holds what plugins hand in through the register_* hooks, by name, and who handed it in."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import PluginError
from .provider import ORDER_STATES, Provider
from .statuses import StatusTables


@dataclass
class PluginInfo:
    """One entry point of the ``shipetl`` group as loaded: where it came from, what it gave, why it broke."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    provides: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        """``name (package shipetl-x 1.0)``: how reports name a plugin, so users know what to uninstall."""
        if not self.distribution:
            return self.name
        return f"{self.name} (package {self.distribution}{' ' + self.version if self.version else ''})"


@dataclass(frozen=True)
class _StatusMapCall:
    plugin: str
    namespace: str
    table: Mapping[str, str | tuple[str, bool]]
    override: bool


@dataclass
class Registry:
    """Providers, status tables, destinations and sandboxes contributed by the loaded plugins."""

    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    providers: dict[str, type[Provider]] = field(default_factory=dict)
    provider_plugin: dict[str, str] = field(default_factory=dict)
    statuses: StatusTables = field(default_factory=StatusTables)
    destinations: dict[str, Callable[..., object]] = field(default_factory=dict)
    destination_plugin: dict[str, str] = field(default_factory=dict)
    sandboxes: dict[str, Callable[..., object]] = field(default_factory=dict)
    sandbox_plugin: dict[str, str] = field(default_factory=dict)
    _status_calls: list[_StatusMapCall] = field(default_factory=list)

    def broken(self) -> list[PluginInfo]:
        """Plugins that failed to load or to register, in name order."""
        return [p for p in self.plugins.values() if p.error]

    def add_provider(self, plugin: str, provider: type[Provider]) -> None:
        """Register a provider class; a name already taken by another plugin is an error naming both."""
        if not (isinstance(provider, type) and issubclass(provider, Provider)):
            raise PluginError(f"plugin {plugin}: register_providers got {provider!r}, not a shipetl.Provider subclass")
        name = getattr(provider, "name", None)
        if not name:
            raise PluginError(f"plugin {plugin}: provider class {provider.__name__} has no name")
        bad = {word: state for word, state in dict(provider.order_states).items() if state not in ORDER_STATES}
        if bad:
            raise PluginError(f"plugin {plugin}: provider {name} order_states {bad}: each must be one of "
                              f"{', '.join(ORDER_STATES)}")
        if name in self.providers and self.provider_plugin[name] != plugin:
            raise PluginError(f"provider {name!r} is registered by both plugin {self.provider_plugin[name]} and plugin {plugin}")
        self.providers[name] = provider
        self.provider_plugin[name] = plugin
        self.plugins[plugin].provides.append(f"provider:{name}")

    def order_states(self) -> dict[str, dict[str, str]]:
        """Each provider's ``order_states`` (raw order status -> order state), for providers that declare some."""
        return {name: dict(cls.order_states) for name, cls in sorted(self.providers.items()) if cls.order_states}

    def add_status_map(self, plugin: str, namespace: str, table: Mapping[str, str | tuple[str, bool]],
                       override: bool = False) -> None:
        """Queue one plugin's status table; :meth:`apply_status_maps` merges them, overrides last."""
        if not isinstance(table, Mapping):
            raise PluginError(f"plugin {plugin}: status map {namespace!r} must be a mapping of raw code -> status")
        self._status_calls.append(_StatusMapCall(plugin, namespace, dict(table), override))

    def apply_status_maps(self) -> dict[str, str]:
        """Merge queued tables: plain ones first, then overrides, so an override wins whatever the load order.

        Returns {plugin: error} for plugins whose table was refused (clash, unknown status); the
        tables of the other plugins are kept.
        """
        errors: dict[str, str] = {}
        calls, self._status_calls = sorted(self._status_calls, key=lambda c: c.override), []
        for call in calls:
            if call.plugin in errors or self.plugins[call.plugin].error:
                continue
            before = {raw: e.plugin for (ns, raw), e in self.statuses.entries.items() if ns == call.namespace}
            kept = dict(self.statuses.entries), {ns: set(p) for ns, p in self.statuses.suppliers.items()}
            try:
                self.statuses.add(call.plugin, call.namespace, call.table, override=call.override)
            except PluginError as exc:  # refuse the whole table, not the codes before the clash
                self.statuses.entries, self.statuses.suppliers = kept
                errors[call.plugin] = str(exc)
                continue
            refined = sorted({before[str(raw).strip()] for raw in call.table
                              if before.get(str(raw).strip(), call.plugin) != call.plugin})
            note = f" (overrides {', '.join(refined)})" if call.override and refined else ""
            self.plugins[call.plugin].provides.append(f"statuses:{call.namespace}{note}")
        return errors

    def status_suppliers(self) -> dict[str, list[str]]:
        """Namespace -> the plugins whose codes are in force in it, for ``shipetl plugins``."""
        out: dict[str, set[str]] = {}
        for (ns, _raw), entry in self.statuses.entries.items():
            out.setdefault(ns, set()).add(entry.plugin)
        return {ns: sorted(p) for ns, p in sorted(out.items())}

    def add_destination(self, plugin: str, name: str, factory: Callable[..., object]) -> None:
        """Register a destination factory; a name already taken by another plugin is an error naming both."""
        if not callable(factory):
            raise PluginError(f"plugin {plugin}: register_destinations({name!r}, ...) got {factory!r}, not a callable")
        if name in self.destinations and self.destination_plugin[name] != plugin:
            raise PluginError(f"destination {name!r} is registered by both plugin {self.destination_plugin[name]} and plugin {plugin}")
        self.destinations[name] = factory
        self.destination_plugin[name] = plugin
        self.plugins[plugin].provides.append(f"destination:{name}")

    def add_sandbox(self, plugin: str, name: str, factory: Callable[..., object]) -> None:
        if name in self.sandboxes:
            raise PluginError(f"sandbox {name!r} is registered twice (second time by plugin {plugin})")
        self.sandboxes[name] = factory
        self.sandbox_plugin[name] = plugin
        self.plugins[plugin].provides.append(f"sandbox:{name}")

    def forget(self, plugin: str) -> None:
        """Drop what a plugin that broke part-way registered, so nothing of it is used."""
        for names, owners in ((self.providers, self.provider_plugin), (self.destinations, self.destination_plugin),
                              (self.sandboxes, self.sandbox_plugin)):
            for name in [n for n, p in owners.items() if p == plugin]:
                del names[name], owners[name]
        self._status_calls = [c for c in self._status_calls if c.plugin != plugin]
        self.plugins[plugin].provides.clear()

    def provider(self, name: str) -> type[Provider]:
        """The provider class called ``name``; unknown names list the known ones."""
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(sorted(self.providers)) or "none"
            close = difflib.get_close_matches(name, sorted(self.providers), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(f"no provider plugin named {name!r} is installed{hint} (installed: {known})") from None

    def destination(self, name: str) -> Callable[..., object]:
        """The destination factory called ``name``; unknown names list the known ones."""
        try:
            return self.destinations[name]
        except KeyError:
            known = ", ".join(sorted(self.destinations)) or "none"
            raise PluginError(f"no destination named {name!r} is installed (installed: {known})") from None
