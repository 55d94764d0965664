"""The pipeline YAML file: read it, expand ``${VAR}``, validate it, and point errors at file, line and key.

Shape (every mapping rejects unknown keys)::

    warehouse: {path: data/warehouse.duckdb, lake: data/lake, raw: data/raw, tokens: data/tokens,
                raw_keep_days: null, memory_limit: 512MB, commit_timeout: 60}  # optional; see WarehouseConfig
    run: {max_parallel_sources: 2, expire_after_days: 30}  # optional
    analytics: {stuck_after_days: 5}                       # optional; the marts' settings
    destination: duckdb              # optional; a destination plugin's name
    sources:
      - name: shipengine-main        # [a-z0-9_-]+, unique; defaults to the provider name
        provider: shipengine
        enabled: true
        base_url: null
        timezone: null               # IANA zone for naive local times
        start: 2024-01-01            # first-run lower bound, date or datetime
        lookback: 2d                 # 90s, 15m, 6h, 2d, 1w
        rate_limit: {per_second:, per_minute:, per_hour:, burst:, max_in_flight:}
        credentials: {api_key: "${SHIPENGINE_API_KEY}"}   # every value is a secret
        pii: hash                    # personal fields: hash (keyed by credentials.pii_key), drop or keep
        status_map: {tracking_events: {"DP": in_transit}}  # codes no status table knows, by table
        max_open_polls: null         # open parcels asked again per run at most, in turn; null: all
        options: {}                  # checked later against the provider's own model

``${VAR}`` and ``${VAR:-default}`` are expanded in every string value (never in keys); as in the shell,
the default also applies when VAR is set but empty. ``$${`` stands for a literal ``${``.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from . import redact
from .config_errors import format_errors, kind_of
from .config_options import validate_options
from .config_values import (MEMORY_SIZE, BaseUrl, CanonicalStatus, Duration, StartTime, StatusTable, format_duration,
                            from_folder, parse_duration, time_zones)
from .errors import ConfigError
from .redact import MASK
from .yamlfile import ExpandProblem, KeyPath, expand, locate, parse_yaml

__all__ = [
    "AnalyticsConfig",
    "ConfigError",
    "PipelineConfig",
    "RateLimitConfig",
    "RunConfig",
    "SourceConfig",
    "WarehouseConfig",
    "format_duration",
    "load",
    "parse_duration",
    "validate_options",
]

# ----------------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarehouseConfig(_Model):
    """Where the warehouse lives.

    A relative path is taken from the pipeline file's folder, not from wherever the command runs (cron
    starts in the home folder); ``~`` is the home folder. ``lake``, ``raw`` and ``tokens`` default to
    folders beside the warehouse file.
    """

    path: str = "data/warehouse.duckdb"
    lake: str = ""
    raw: str = ""
    tokens: str = ""
    """Token pairs of providers with OAuth-style tokens (Shopee, AliExpress, Fuuffy), one 0600 file per account."""
    raw_keep_days: int | None = Field(None, ge=1)
    """Days a source account's raw pages are kept after a successful run (none: for ever)."""
    memory_limit: str = "512MB"
    commit_timeout: float = Field(60, gt=0)
    """Seconds to wait for readers to release the file before a commit gives up."""

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not MEMORY_SIZE.match(value):
            raise ValueError(f"expected a size like '1GB' or '512MB', got {value!r}")
        return value.strip()

    def from_folder(self, folder: Path) -> WarehouseConfig:
        """These settings with every path taken from ``folder`` (the pipeline file's) and the defaults filled in."""
        path = from_folder(folder, self.path)
        beside = Path(path).parent
        return self.model_copy(update={
            "path": path,
            **{name: from_folder(folder, given) if given else str(beside / name)
               for name, given in (("lake", self.lake), ("raw", self.raw), ("tokens", self.tokens))},
        })


class RunConfig(_Model):
    """How a run behaves as a whole."""

    max_parallel_sources: int = Field(2, ge=1)
    expire_after_days: int = Field(30, ge=1)


class AnalyticsConfig(_Model):
    """Settings of the analytics marts (``shipetl/marts/``) and ``shipetl report``."""

    stuck_after_days: int = Field(5, ge=1)
    """A parcel not in a final status with no scan for this many days is listed in ``stuck_shipments``."""


class RateLimitConfig(_Model):
    """Overrides of a provider's default rate limit; unset fields keep the provider's value."""

    per_second: float | None = Field(None, gt=0)
    per_minute: float | None = Field(None, gt=0)
    per_hour: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    max_in_flight: int | None = Field(None, ge=1)


class SourceConfig(_Model):
    """One source: a provider plus its account's credentials and options."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    provider: str
    enabled: bool = True
    base_url: BaseUrl = None
    timezone: str | None = None
    start: StartTime = None
    lookback: Duration = timedelta(0)
    rate_limit: RateLimitConfig | None = None
    credentials: dict[str, SecretStr] = Field(default_factory=dict)
    pii: Literal["hash", "drop", "keep"] = "hash"
    """Buyer and recipient personal data: keyed hash (key: credentials.pii_key), dropped, or kept as sent."""
    options: dict[str, Any] = Field(default_factory=dict)
    status_map: dict[StatusTable, dict[str, CanonicalStatus]] = Field(default_factory=dict)
    """Raw codes the provider's status tables leave unknown, given a status by hand, per table."""
    max_open_polls: int | None = Field(None, ge=1)
    """Records the warehouse holds as open (parcels, orders) asked again per run at most, taken in turn; None: all."""

    _unset: tuple[str, ...] = PrivateAttr(default=())  # this source's unset ${VAR}s, one error line each
    _left_out: dict[KeyPath, list[str]] = PrivateAttr(default_factory=dict)  # their keys, each with its ${VAR}s
    _file: str = PrivateAttr(default="PIPELINE")  # the pipeline file as the user named it, for commands to run
    _locate: Any = PrivateAttr(default=None)  # key ("options.app_key") -> "file:line: sources[i].options.app_key"
    _emptied: dict[str, list[str]] = PrivateAttr(default_factory=dict)  # credential -> ${VAR}s set to nothing

    @property
    def unset_variables(self) -> tuple[str, ...]:
        """One ``file:line: key: ${VAR} is unset ...`` line per unset variable of this source.

        A source with any cannot run: :func:`validate_options` raises them, so ``shipetl validate``
        and the run report them, while the other sources load and run.
        """
        return self._unset

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("provider"), str):
            data = {**data, "name": data["provider"]}
        return data

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value not in time_zones():
            close = difflib.get_close_matches(value, sorted(time_zones()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown IANA time zone {value!r}{hint}")
        ZoneInfo(value)
        return value

    @field_validator("status_map", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 07 as the number 7: the code as sent is lost, so it must be quoted.
        if isinstance(value, dict):
            for table, codes in value.items():
                for code in codes if isinstance(codes, dict) else ():
                    if not isinstance(code, str):
                        raise ValueError(f"{table}: code {code!r} must be quoted text, as the code is sent "
                                         "('07', not 07): YAML reads unquoted digits as a number")
            return {table: {code.strip(): status for code, status in codes.items()} if isinstance(codes, dict) else codes
                    for table, codes in value.items()}
        return value

    @field_validator("credentials", mode="before")
    @classmethod
    def _credential_text(cls, value: Any) -> Any:
        # Numeric ids (Shopee partner_id) are fine as credentials; YAML reads them as numbers.
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value

    @field_serializer("lookback")
    def _lookback_text(self, value: timedelta) -> str:
        return format_duration(value)

    @field_serializer("start")
    def _start_text(self, value: date | datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    def auth_command(self, account_id: str | None = None) -> str:
        """The ``shipetl auth`` command line that links this source's accounts (or only ``account_id``) again."""
        target = f"{self.name}/{account_id}" if account_id and account_id != self.name else self.name
        return f"shipetl auth {shlex.quote(self._file)} {target}"

    def problem(self, key: str, message: str) -> ConfigError:
        """A ConfigError about ``key`` of this source (``options.app_key``), naming the file, line and key path."""
        where = self._locate(key) if self._locate is not None else f"source {self.name!r}: {key}"
        return ConfigError(f"{where}: {message}")

    def secret(self, name: str) -> str:
        """The raw value of credential ``name``; ConfigError naming the key when missing or empty."""
        value = self.credentials.get(name)
        if value is None:
            have = ", ".join(sorted(self.credentials)) or "none"
            why = " to hash personal data (pii: hash; or set pii: drop)" if name == "pii_key" else ""
            raise self.problem(f"credentials.{name}", f"missing; source {self.name!r} needs it{why} (credentials given: {have})")
        raw = value.get_secret_value()
        if not raw.strip():
            names = self._emptied.get(name)
            why = f" ({', '.join(f'${{{n}}}' for n in names)} {'is' if len(names) == 1 else 'are'} set but empty)" if names else ""
            raise self.problem(f"credentials.{name}", f"is empty{why}")
        return raw


class PipelineConfig(_Model):
    """A whole pipeline file. ``path`` is the file it was read from."""

    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    destination: str = "duckdb"
    """Registered destination the run loads into (``shipetl plugins`` lists them); ``duckdb`` uses ``warehouse:``."""
    sources: list[SourceConfig] = Field(min_length=1)

    _path: Path = PrivateAttr(default=Path("<memory>"))
    _lines: dict[KeyPath, int] = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def lines(self) -> dict[KeyPath, int]:
        """The file line of each key path, for errors that point at one."""
        return self._lines

    def problem(self, *key: str | int, message: str) -> ConfigError:
        """A ConfigError about a key path of the file (``"destination"``), naming its file and line."""
        return ConfigError(f"{locate(str(self._path), self._lines, key)}: {message}")

    def source(self, name: str) -> SourceConfig:
        """The source called ``name``; ConfigError when there is none."""
        for src in self.sources:
            if src.name == name:
                return src
        raise ConfigError(f"{self._path}: no source named {name!r}; have {', '.join(s.name for s in self.sources)}")

    def redacted_dict(self) -> dict[str, Any]:
        """The validated config as plain data for ``shipetl validate``; credential values are ``***``."""
        data = self.model_dump(mode="json")
        for src, source in zip(data["sources"], self.sources):
            src["credentials"] = {key: MASK for key in src["credentials"]}
            if src["rate_limit"]:
                src["rate_limit"] = {k: v for k, v in src["rate_limit"].items() if v is not None}
            for (*parents, key), references in source._left_out.items():  # so, not as a default or nothing
                node = src
                for parent in parents:
                    node = node.setdefault(parent, {}) if isinstance(node, dict) else None
                if isinstance(node, dict):
                    node[key] = f"{' '.join(references)} (unset)"
        return data


# -------------------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read, expand and validate the pipeline file at ``path``; ``env`` defaults to ``os.environ``.

    Raises ConfigError naming the file, the line where known, and the key path of every problem.
    Every credential value is registered with :mod:`shipetl.redact` before anything can print it.
    """
    file = Path(path)
    shown = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a pipeline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read: {exc}") from None

    data, lines = parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: the file is empty; expected a mapping with a 'sources:' list")
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}:1: expected a mapping with a 'sources:' list, got a {kind_of(data)}")

    data, problems, emptied = expand(data, os.environ if env is None else env, shown, lines)
    unset = _defer_source_problems(data, problems)
    secrets = _register_credentials(data)

    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, shown, lines, PipelineConfig, (), secrets)) from None

    config._path = file
    config._lines = lines
    config.warehouse = config.warehouse.from_folder(file.parent)
    problems = []
    seen: dict[str, int] = {}
    for i, src in enumerate(config.sources):
        src._locate = lambda key, i=i: locate(shown, lines, ("sources", i, *key.split(".")))
        src._emptied = {path[3]: names for path, names in emptied.items()
                        if path[:3] == ("sources", i, "credentials") and len(path) == 4}
        src._unset = tuple(problem.message for problem in unset.get(i, ()))
        for problem in unset.get(i, ()):
            src._left_out.setdefault(problem.path[2:], []).append(problem.reference)
        src._file = shown
        if src.name in seen:
            key = ("sources", i, "name") if ("sources", i, "name") in lines else ("sources", i)
            problems.append(f"{locate(shown, lines, key)}: duplicate source name {src.name!r} "
                            f"(also sources[{seen[src.name]}]); give each source a unique name")
        seen.setdefault(src.name, i)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _defer_source_problems(data: dict[str, Any], problems: list[ExpandProblem]) -> dict[int, list[ExpandProblem]]:
    """Make each unset ``${VAR}`` inside ``sources[i]`` that source's own problem; raise for the rest.

    A failing source must not take the others down: the file still loads, the keys holding the unset
    variables are left out of that source (its defaults apply), and its problems are returned by source
    index. A problem elsewhere (warehouse, a source's name or provider, which say what the source is)
    fails the whole file, as it always did, listing every problem; so does a malformed ``${...}``.
    """
    sources = data.get("sources")
    by_source: dict[int, list[ExpandProblem]] = {}
    for problem in problems:
        path = problem.path
        deferrable = (problem.unset and len(path) >= 3 and path[0] == "sources" and isinstance(path[1], int)
                      and isinstance(sources, list) and isinstance(sources[path[1]], dict)
                      and path[2] not in ("name", "provider"))
        if not deferrable:
            raise ConfigError("\n".join(p.message for p in problems))
        by_source.setdefault(path[1], []).append(problem)
    for path in (problem.path for problem in problems):
        src = sources[path[1]]
        creds = src.get("credentials")
        if path[2] == "credentials" and len(path) >= 4 and isinstance(creds, dict):
            src["credentials"] = {k: v for k, v in creds.items() if k != path[3]}  # the others stay secret
        else:
            src.pop(path[2], None)
    return by_source


def _register_credentials(data: dict[str, Any]) -> list[str]:
    """Register every credential value with redact; return them so config errors can mask them too."""
    found: list[str] = []
    sources = data.get("sources")
    for src in sources if isinstance(sources, list) else []:
        creds = src.get("credentials") if isinstance(src, dict) else None
        for value in creds.values() if isinstance(creds, dict) else []:
            if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
                redact.register_secret(str(value))
                found.append(str(value))
    return found

