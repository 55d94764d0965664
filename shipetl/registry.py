"""Holds what plugins hand in through the register_* hooks, by name, and who handed it in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import PluginError
from .provider import Provider
from .statuses import StatusTables


@dataclass
class PluginInfo:
    """One entry point of the ``shipetl`` group as loaded: where it came from and what it gave."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    provides: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Registry:
    """Providers, status tables and sandboxes contributed by the loaded plugins."""

    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    providers: dict[str, type[Provider]] = field(default_factory=dict)
    provider_plugin: dict[str, str] = field(default_factory=dict)
    statuses: StatusTables = field(default_factory=StatusTables)
    sandboxes: dict[str, Callable[..., object]] = field(default_factory=dict)

    def add_provider(self, plugin: str, provider: type[Provider]) -> None:
        """Register a provider class; a name already taken by another plugin is an error naming both."""
        if not (isinstance(provider, type) and issubclass(provider, Provider)):
            raise PluginError(f"plugin {plugin}: register_providers got {provider!r}, not a shipetl.Provider subclass")
        name = getattr(provider, "name", None)
        if not name:
            raise PluginError(f"plugin {plugin}: provider class {provider.__name__} has no name")
        if name in self.providers and self.provider_plugin[name] != plugin:
            raise PluginError(f"provider {name!r} is registered by both plugin {self.provider_plugin[name]} and plugin {plugin}")
        self.providers[name] = provider
        self.provider_plugin[name] = plugin
        self.plugins[plugin].provides.append(f"provider:{name}")

    def add_sandbox(self, plugin: str, name: str, factory: Callable[..., object]) -> None:
        if name in self.sandboxes:
            raise PluginError(f"sandbox {name!r} is registered twice (second time by plugin {plugin})")
        self.sandboxes[name] = factory
        self.plugins[plugin].provides.append(f"sandbox:{name}")

    def provider(self, name: str) -> type[Provider]:
        """The provider class called ``name``; unknown names list the known ones."""
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(sorted(self.providers)) or "none"
            raise PluginError(f"no provider plugin named {name!r} is installed (installed: {known})") from None
