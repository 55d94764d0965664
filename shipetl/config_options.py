"""One source of a loaded pipeline checked against its provider: its options, typed by the provider's model,
and its credential keys, each problem one ``file:line: key.path: message`` line."""

from __future__ import annotations

import difflib
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from .config_errors import format_errors
from .config_values import from_folder
from .errors import ConfigError
from .yamlfile import locate

if TYPE_CHECKING:
    from .config import PipelineConfig, SourceConfig


def validate_options(pipeline: PipelineConfig, source: SourceConfig, model: type[BaseModel],
                     provider: type | None = None) -> BaseModel:
    """Check one source against its provider and return its options as an instance of ``model``.

    Raises ConfigError, one ``file:line: key.path: message`` line per problem, for the source's unset
    ``${VAR}``s (then nothing else is checked), credential keys the provider does not read, and
    ``sources[i].options.<key>`` problems. Credentials are checked against ``provider`` (the provider
    class) when it is given.
    """
    if source.unset_variables:
        raise ConfigError("\n".join(source.unset_variables))
    index = next((i for i, s in enumerate(pipeline.sources) if s is source), None)
    if index is None:
        index = next((i for i, s in enumerate(pipeline.sources) if s.name == source.name), 0)
    secrets = [v.get_secret_value() for s in pipeline.sources for v in s.credentials.values()]
    problems = _unknown_credentials(pipeline, source, index, model, provider)
    try:
        options = model.model_validate(source.options)
    except ValidationError as exc:
        problems.append(
            format_errors(exc, str(pipeline.path), pipeline.lines, model, ("sources", index, "options"), secrets))
    if problems:
        raise ConfigError("\n".join(problems))
    return _paths_from_folder(options, pipeline.path.parent)


def _paths_from_folder(options: BaseModel, folder: Path) -> BaseModel:
    """``options`` with each option typed as a path taken from ``folder``, as the warehouse paths are."""
    moved = {name: Path(from_folder(folder, value)) for name in type(options).model_fields
             if isinstance(value := getattr(options, name), PurePath)}
    return options.model_copy(update=moved) if moved else options


# Credentials core itself reads, whatever the provider: the key of ``pii: hash``.
CORE_CREDENTIALS = ("pii_key",)


def _unknown_credentials(pipeline: PipelineConfig, source: SourceConfig, index: int, model: type[BaseModel],
                         provider: type | None) -> list[str]:
    """One error line per credential key the provider never reads, with a did-you-mean hint.

    Known: the provider's ``secrets``, core's ``pii_key``, and the provider's option names (a value a
    provider takes from options may be given as a credential instead: Shopee ``partner_id``, AliExpress
    ``app_key``). A provider declaring no ``secrets`` is not checked: it may read undeclared ones.
    """
    declared = set(getattr(provider, "secrets", ()))
    if not declared or not source.credentials:
        return []
    known = sorted(declared | set(CORE_CREDENTIALS) | set(getattr(model, "model_fields", {})))
    shown = str(pipeline.path)
    out = []
    for key in source.credentials:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        secrets = sorted(declared | set(CORE_CREDENTIALS))  # the options, accepted here too, are listed under options
        hint = (f"did you mean {close[0]!r}?" if close
                else f"provider {source.provider} reads credentials {', '.join(repr(k) for k in secrets)}")
        out.append(f"{locate(shown, pipeline.lines, ('sources', index, 'credentials', key))}: "
                   f"unknown credential; {hint}")
    return out
