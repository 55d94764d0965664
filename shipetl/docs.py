"""Text produced from the code: ``shipetl schema`` output, and the schema and CLI references in README.md.

``python -m shipetl.docs`` rewrites the generated sections of README.md (between ``<!-- name:start -->``
and ``<!-- name:end -->`` markers) and the repository's ``pipelines/daily.yaml`` (from the package's starter, see
:mod:`shipetl.starter`); ``tests/test_docs.py`` fails when they drift from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .errors import ShipetlError
from .schema import TABLES
from .canonical_sql import duckdb_type


def _tables(name: str | None):
    if name is None:
        return list(TABLES.values())
    if name not in TABLES:
        raise ShipetlError(f"no canonical table {name!r}; tables: {', '.join(TABLES)}")
    return [TABLES[name]]


def schema_text(name: str | None = None) -> str:
    """Plain-text listing of one or every canonical table."""
    out = []
    for t in _tables(name):
        out.append(f"{t.name}: {t.description}\n  key: {', '.join(t.key)}\n")
        width = max(len(f.name) for f in t.columns)
        for f in t.columns:
            null = "" if f.nullable else " not null"
            out.append(f"  {f.name:<{width}}  {str(f.type) + null:<32} {f.metadata[b'doc'].decode()}\n")
        out.append("\n")
    return "".join(out)


def schema_markdown() -> str:
    """The column reference of README.md, one table per canonical table."""
    out = []
    for t in TABLES.values():
        out.append(f"#### `{t.name}`\n\n{t.description} Key: `{', '.join(t.key)}`.\n\n")
        out.append("| column | Arrow type | DuckDB type | null | description |\n| --- | --- | --- | --- | --- |\n")
        for f in t.columns:
            out.append(f"| `{f.name}` | `{f.type}` | `{duckdb_type(f.type)}` | {'yes' if f.nullable else 'no'} | {f.metadata[b'doc'].decode()} |\n")
        out.append("\n")
    return "".join(out)


def cli_markdown() -> str:
    """Every ``shipetl`` command with its usage line and options, as ``--help`` prints them."""
    import click

    from .cli import cli

    out = []
    root = click.Context(cli, info_name="shipetl")
    for name in sorted(cli.list_commands(root)):
        command = cli.get_command(root, name)
        ctx = click.Context(command, info_name=name, parent=root)
        help_text = command.get_help(ctx).replace("\u2026", "...")
        out.append(f"#### `shipetl {name}`\n\n```text\n{help_text}\n```\n\n")
    return "".join(out)


def providers_markdown() -> str:
    """Each built-in provider: defaults, the credentials it reads and its options, from its own classes."""
    from .plugins import load_registry

    registry = load_registry()
    builtin = {n: p for n, p in registry.providers.items()
               if registry.plugins[registry.provider_plugin[n]].distribution == "shipetl"}
    return "".join(provider_markdown(name, provider) for name, provider in sorted(builtin.items()))


def provider_markdown(name: str, provider) -> str:
    """One provider's reference: what it is, its defaults, the credentials it reads and its options."""
    doc = " ".join((provider.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph
    limit = provider.default_rate_limit
    rates = ", ".join(f"{v:g} {k.replace('_', ' ')}" for k, v in (limit.__dict__.items() if limit else ())
                      if k.startswith("per_") and v) or "none"
    out = [f"#### `{name}`\n\n{doc}\n\n",
           f"- base URL: `{provider.default_base_url}`; time zone of naive times: "
           f"`{provider.default_timezone or 'n/a'}`; default rate limit: {rates}\n",
           f"- credentials: {', '.join(f'`{c}`' for c in provider.secrets) or 'none'}\n\n"]
    fields = provider.options_model.model_fields
    if fields:
        out.append("| option | default | meaning |\n| --- | --- | --- |\n")
        for key, field in fields.items():
            default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
            out.append(f"| `{key}` | {default} | {(field.description or '').replace('|', '/')} |\n")
        out.append("\n")
    return "".join(out)


SECTIONS = {"schema": schema_markdown, "cli": cli_markdown, "providers": providers_markdown}


def refresh(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ShipetlError(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> section")
        text = pattern.sub(lambda m: m.group(1) + "\n" + make() + m.group(2), text)
    return text


if __name__ == "__main__":
    from . import starter

    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(refresh(readme.read_text(encoding="utf-8")), encoding="utf-8")
    daily = readme.parent / starter.PLACE
    daily.write_text(starter.template_text(), encoding="utf-8")
    print(f"refreshed {readme} and {daily}")
