"""Every hook of shipetl, in the order a run reaches it; the docstrings are the plugin reference.

A plugin is a module listed under the ``shipetl`` entry-point group whose functions carry
``@shipetl.hookimpl``. Each hook hands the plugin a ``register`` callback; the host, not the plugin,
checks names, reports clashes and names the plugin at fault. Implement only the hooks you need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .provider import Provider

API_VERSION = 1
hookspec = pluggy.HookspecMarker("shipetl")
hookimpl = pluggy.HookimplMarker("shipetl")


class RegisterProvider(Protocol):
    def __call__(self, provider: type[Provider]) -> None: ...


class RegisterStatusMap(Protocol):
    def __call__(self, namespace: str, table: Mapping[str, str | tuple[str, bool]], *, override: bool = False) -> None: ...


class RegisterSandbox(Protocol):
    def __call__(self, name: str, factory: Callable[..., object]) -> None: ...


# -- start-up: called once each, after every plugin has loaded ------------------------------------


@hookspec
def shipetl_api_version() -> int:
    """Return the hook API version the plugin was written for (this release: ``1``).

    Called first, for every plugin. A plugin answering another major version is reported as
    incompatible in ``shipetl plugins`` and in the run summary, and is not used; other plugins go on.
    A plugin that does not implement it is assumed to target the current version.
    """


@hookspec
def register_providers(register: RegisterProvider) -> None:
    """Add provider classes: sources of orders, shipments and tracking events.

    Called once at start-up, before the pipeline file is validated, because a source's ``provider:``
    key must name a registered provider.

    :param register: call ``register(ProviderSubclass)`` per provider. ``ProviderSubclass.name`` is the
        name users write in pipeline YAML; two plugins registering one name stop start-up with both
        plugin names.
    """


@hookspec
def register_status_maps(register: RegisterStatusMap) -> None:
    """Add tables that map raw carrier or provider codes to canonical tracking statuses.

    Called once, after providers are registered and before the first source runs.

    :param register: call ``register(namespace, {raw_code: status})`` per namespace (a provider name
        such as ``shipengine``, or a carrier code such as ``usps``). A value may be
        ``(status, is_final)`` where a status is final for some codes only (``exception``). A raw code
        given two different statuses by two plugins stops start-up with both plugin names, unless the
        later one passes ``override=True``, which refines the mapping on purpose; ``shipetl plugins``
        shows which plugin supplied each namespace.
    """


@hookspec
def register_sandboxes(register: RegisterSandbox) -> None:
    """Add a provider's fake API to ``shipetl sandbox``.

    Called when the sandbox starts.

    :param register: call ``register(name, factory)``; ``factory(settings)`` returns an ASGI app
        mounted at ``/<name>``, so the provider's ``base_url`` in the sandbox is
        ``http://127.0.0.1:PORT/<name>``.
    """
