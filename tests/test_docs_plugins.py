"""The plugin guide's hook reference is generated from hookspecs.py, and a test keeps it so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipetl import docs, plugins
from shipetl.errors import ShipetlError

GUIDE_TEXT = (Path(__file__).resolve().parents[1] / docs.GUIDE).read_text(encoding="utf-8")
SPECS = plugins.hookspec_functions()


def test_hook_reference_matches_hookspecs():
    assert docs.with_reference(GUIDE_TEXT) == GUIDE_TEXT, (
        "plugins/README.md's hook reference is out of date: run `python -m shipetl.docs README.md`")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.__name__)
def test_every_hook_is_documented_with_its_signature(spec):
    assert f"### `{docs.hook_signature(spec)}`" in GUIDE_TEXT
    assert spec.__doc__ and "Called" in spec.__doc__, f"{spec.__name__}'s docstring must say when it is called"


def test_guide_documents_no_hook_that_does_not_exist():
    documented = set(re.findall(r"^### `(\w+)\(", GUIDE_TEXT, flags=re.MULTILINE))
    assert documented == {s.__name__ for s in SPECS}


def test_stale_reference_is_detected():
    stale = GUIDE_TEXT.replace("### `register_destinations(register)`", "### `register_destinations()`")
    assert docs.with_reference(stale) != stale


def test_guide_without_markers_is_an_error():
    with pytest.raises(ShipetlError, match="hook-reference"):
        docs.with_reference("# a guide with no reference block\n")
