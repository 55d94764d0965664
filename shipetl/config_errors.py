"""Pydantic errors of the pipeline file as ``file:line: key.path: message`` lines, with did-you-mean hints."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from .redact import MASK, redact_text
from .yamlfile import KeyPath, locate


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    return type(value).__name__


_EXPECTED = {
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "date_parsing": "expected a date like 2024-01-01",
    "date_from_datetime_parsing": "expected a date like 2024-01-01",
    "date_type": "expected a date like 2024-01-01",
    "datetime_parsing": "expected a datetime like 2024-01-01T00:00:00Z",
    "datetime_from_date_parsing": "expected a datetime like 2024-01-01T00:00:00Z",
    "datetime_type": "expected a datetime like 2024-01-01T00:00:00Z",
}


def _unwrap(annotation: Any) -> list[Any]:
    """The classes an annotation may hold (Optional, unions, Annotated and generics opened up)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at ``loc`` (list indexes and dict keys skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if isinstance(part, int):  # an index into the list this model came from
                continue
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        models = [t for t in _unwrap(current) if isinstance(t, type) and issubclass(t, BaseModel)]
        if models:
            current = models[0]
            continue
        args = [a for t in _unwrap(current) for a in typing.get_args(t)]
        models = [t for a in args for t in _unwrap(a) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not models:
            return None
        current = models[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _message(err: Mapping[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    secret = "credentials" in loc
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        names = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
        return f"unknown key; expected one of {', '.join(names)}" if names else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "too_short" and loc and loc[-1] == "sources":
        return "needs at least one source"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        text = "use lowercase letters, digits, '-' and '_' only"
    elif kind in _EXPECTED:
        text = _EXPECTED[kind]
    else:
        msg = str(err["msg"])
        text = msg[:1].lower() + msg[1:]
    if secret:
        return text  # never echo a credential
    value = err.get("input")
    got = f"a {kind_of(value)}" if isinstance(value, dict | list) or value is None else repr(value)
    return f"{text}, got {got}"


def format_errors(exc: ValidationError, shown: str, lines: Mapping[KeyPath, int],
                   model: type[BaseModel], prefix: KeyPath, secrets: list[str]) -> str:
    errors = exc.errors(include_url=False)
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    out: list[str] = []
    for err in errors:
        loc = tuple(err["loc"])
        if loc in missing and loc[-1:] == ("name",) and (*loc[:-1], "provider") in missing:
            continue  # the name defaults to the provider; saying provider is missing is enough
        line = f"{locate(shown, lines, prefix + loc)}: {_message(err, model, loc)}"
        if line not in out:
            out.append(line)
    return _mask("\n".join(out), secrets)


def _mask(text: str, secrets: list[str]) -> str:
    """Mask credential values even if they landed in a non-credential key, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return redact_text(text)
