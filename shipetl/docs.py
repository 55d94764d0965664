"""Text produced from the schema: ``shipetl schema`` output and the column reference in docs/schema.md."""

from __future__ import annotations

from .errors import ShipetlError
from .schema import TABLES
from .transform import duckdb_type


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
    """The column reference kept in docs/schema.md (a test fails when the file differs)."""
    out = ["# Canonical schema (v1)\n\n",
           "Generated from `shipetl/schema.py` by `python -m shipetl.docs`; do not edit by hand.\n\n"]
    for t in TABLES.values():
        out.append(f"## `{t.name}`\n\n{t.description} Key: `{', '.join(t.key)}`.\n\n")
        out.append("| column | Arrow type | DuckDB type | null | description |\n| --- | --- | --- | --- | --- |\n")
        for f in t.columns:
            out.append(f"| `{f.name}` | `{f.type}` | `{duckdb_type(f.type)}` | {'yes' if f.nullable else 'no'} | {f.metadata[b'doc'].decode()} |\n")
        out.append("\n")
    return "".join(out)


if __name__ == "__main__":
    print(schema_markdown(), end="")
