"""``shipetl new-plugin``: writes a pip-installable provider plugin that passes its own tests as generated.

The package is copied from ``scaffold_templates/`` (shipped as package data): every ``*.tmpl`` file,
with ``{{placeholders}}`` filled in and ``package/`` renamed to the import package ``shipetl_<name>``.
Its shape is the built-in plugins' shape, so the walk through ShipEngine in ``plugins/README.md``
applies to it line by line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import ShipetlError

if TYPE_CHECKING:
    from .registry import Registry

TEMPLATES = Path(__file__).parent / "scaffold_templates"
SUFFIX = ".tmpl"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def names(name: str) -> dict[str, str]:
    """Every spelling of a plugin name the templates use (``dhl_ecom`` -> ``shipetl-dhl-ecom``, ``DhlEcom``...)."""
    if not NAME.match(name):
        raise ShipetlError(f"plugin name {name!r}: use 2-40 lowercase letters, digits and underscores, starting "
                           f"with a letter (it becomes the provider name in pipeline YAML)")
    return {
        "name": name,
        "package": f"shipetl_{name}",
        "distribution": f"shipetl-{name.replace('_', '-')}",
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "title": " ".join(part.capitalize() for part in name.split("_")),
        "host": name.replace("_", "-"),  # no underscore in a host name
        "upper": name.upper().replace("_", ""),
        "env": name.upper(),
        "shipetl_version": __version__,
    }


def render(text: str, values: dict[str, str]) -> str:
    """Fill ``{{key}}`` placeholders; an unknown key is a bug in the templates, so it raises."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def check_free(name: str, registry: Registry) -> None:
    """Refuse a name an installed plugin already uses (as plugin, provider or sandbox): both could not load."""
    for kind, owners in (("provider", registry.provider_plugin), ("sandbox", registry.sandbox_plugin),
                         ("plugin", {n: n for n in registry.plugins})):
        if name in owners:
            owner = registry.plugins[owners[name]].label if owners[name] in registry.plugins else owners[name]
            what = f"plugin {owner}" if kind == "plugin" else f"the {kind} of plugin {owner}"
            raise ShipetlError(f"plugin name {name!r} is taken by {what}; pick another name")


def create(name: str, directory: str | Path = ".", registry: Registry | None = None) -> Path:
    """Write the package ``<directory>/shipetl-<name>/`` and return its path.

    :param registry: the installed plugins; a name one of them uses is refused (see :func:`check_free`).
    :raises ShipetlError: the name is not a valid plugin name, is taken, or the folder already exists.
    """
    values = names(name)
    if registry is not None:
        check_free(name, registry)
    root = Path(directory) / values["distribution"]
    if root.exists():
        raise ShipetlError(f"{root} already exists; remove it or pick another --dir")
    for template in sorted(TEMPLATES.rglob(f"*{SUFFIX}")):
        relative = template.relative_to(TEMPLATES).with_suffix("")
        parts = [values["package"] if part == "package" else part for part in relative.parts]
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template.read_text(encoding="utf-8"), values), encoding="utf-8")
    return root
