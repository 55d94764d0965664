"""The one way shipetl writes a Python string into generated DuckDB SQL: as a quoted literal."""


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal, single quotes doubled: ``O'Q`` -> ``'O''Q'``."""
    return "'" + text.replace("'", "''") + "'"
