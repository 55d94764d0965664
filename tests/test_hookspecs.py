"""The hook specs are the plugin manual: their shape and their promises, checked."""

from __future__ import annotations

import inspect

import pluggy
import pytest

from shipetl import API_VERSION, hookimpl, hookspecs, plugins

SPECS = plugins.hookspec_functions()
REGISTER_SPECS = [s for s in SPECS if s.__name__.startswith("register_")]


def test_specs_are_listed_in_the_order_a_run_reaches_them():
    assert [s.__name__ for s in SPECS] == ["shipetl_api_version", *plugins.REGISTER_HOOKS]


@pytest.mark.parametrize("spec", REGISTER_SPECS, ids=lambda s: s.__name__)
def test_register_hooks_take_only_a_register_callback_and_document_it(spec):
    assert list(inspect.signature(spec).parameters) == ["register"]
    assert ":param register: call ``register(" in spec.__doc__


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.__name__)
def test_every_spec_says_when_it_runs(spec):
    assert "Called" in inspect.getdoc(spec)


def test_api_version_is_what_the_version_hook_documents():
    assert isinstance(API_VERSION, int)
    assert f"(this release: ``{API_VERSION}``)" in hookspecs.shipetl_api_version.__doc__


def test_an_implementation_may_declare_fewer_arguments_but_not_unknown_ones():
    pm = pluggy.PluginManager("shipetl")
    pm.add_hookspecs(hookspecs)

    calls = []

    class Fewer:
        @hookimpl
        def register_providers(self):  # declares none of the arguments: allowed, and still called
            calls.append("register_providers")

    class Unknown:
        @hookimpl
        def register_providers(self, register, registry):
            pass

    pm.register(Fewer())
    with pytest.raises(pluggy.PluginValidationError, match="registry"):
        pm.register(Unknown())
    assert plugins.registry_from_modules({"fewer": Fewer()}).plugins["fewer"].ok
    assert calls == ["register_providers"]


def test_destination_protocol_names_the_two_methods_the_runner_calls():
    assert set(hookspecs.DESTINATION_METHODS) <= set(vars(hookspecs.Destination))
    assert list(inspect.signature(hookspecs.Destination.commit).parameters) == ["self", "staged", "run", "cursors"]
