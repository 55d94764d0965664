"""Which account jobs a run has: each enabled source's provider, validated options and accounts, the sources
that cannot start (with why), and the ExtractContext of one job.

``run``, ``check``, ``validate`` and ``auth`` all start here, so they refuse the same things the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import config as config_mod
from .config import PipelineConfig
from .context import SourceContext
from .errors import PluginError
from .registry import Registry
from .tokens import TokenStore


@dataclass
class AccountJob:
    """One account of one source, with its provider class and validated options."""

    source: config_mod.SourceConfig
    provider_cls: type
    options: object
    account_id: str


def source_context(pipeline: PipelineConfig, job: AccountJob, label: str, log, *, cursors: dict | None = None,
                   open_shipments: Sequence[dict] | None = None, since: datetime | None = None, until: datetime | None = None,
                   query=None, stop: threading.Event | None = None, started_at: datetime | None = None) -> SourceContext:
    """The ExtractContext of one account: its committed state (none given: a first run's) and the token store."""
    return SourceContext(source=job.source, provider_cls=job.provider_cls, options=job.options, account_id=job.account_id,
                         label=label, cursors=cursors or {}, open_shipments=open_shipments or [], since=since,
                         until=until or datetime.now(timezone.utc), log=log,
                         tokens=TokenStore(Path(pipeline.warehouse.tokens)), query=query, stop=stop,
                         started_at=started_at)


def pii_settings(src: config_mod.SourceConfig, provider_cls) -> tuple[str, str | None]:
    """The ``pii()`` mode and key a source's mappings run with.

    ``pii: hash`` needs ``credentials.pii_key`` (a ConfigError naming the file, line and key) when the
    provider maps personal fields through ``pii()``; a provider with ``pii_key_optional`` (personal data
    only in extras) has them dropped instead.
    """
    if "pii_key" in src.credentials:
        return src.pii, src.secret("pii_key")
    uses_pii = any("pii(" in m.sql for stream in provider_cls.streams for m in stream.mappings)
    if src.pii == "hash" and uses_pii:
        if not provider_cls.pii_key_optional:
            src.secret("pii_key")  # raises
        return "drop", None
    return src.pii, None


def provider_for(registry: Registry, src: config_mod.SourceConfig) -> type:
    """The provider class ``src`` names; an unknown name is a ConfigError at the source's ``provider`` key."""
    try:
        return registry.provider(src.provider)
    except PluginError as exc:
        raise src.problem("provider", str(exc)) from None


def no_such_account(pipeline: PipelineConfig, asked_by: str, src: config_mod.SourceConfig, missing, accounts) -> config_mod.ConfigError:
    """The error for account ids ``asked_by`` (``--only``) named that ``src`` does not have, listing those it has."""
    return config_mod.ConfigError(f"{pipeline.path}: {asked_by}: source {src.name} has no account "
                                  f"{', '.join(sorted(missing))}; its accounts: {', '.join(accounts)}")


def authorize(pipeline: PipelineConfig, registry: Registry, target: str, prompt) -> Iterable[str]:
    """Link a source's accounts (``target`` = ``source``) or one of them (``source/account``): the lines the
    provider's ``authorize`` gives to show, ``prompt`` asking the user for each code pasted back."""
    name, _, account = target.partition("/")
    src = pipeline.source(name)
    provider_cls = provider_for(registry, src)
    provider = provider_cls(src.name, config_mod.validate_options(pipeline, src, provider_cls.options_model, provider_cls))
    accounts = provider.accounts()
    if account and account not in accounts:
        raise no_such_account(pipeline, "auth", src, {account}, accounts)
    return provider.authorize(src, TokenStore(Path(pipeline.warehouse.tokens)), prompt, [account] if account else accounts)


def plan(pipeline: PipelineConfig, registry: Registry, only: Sequence[str] = ()) -> tuple[list[AccountJob], list[tuple[config_mod.SourceConfig, Exception]]]:
    """One job per account of every selected source, and each source that cannot even start with why.

    ``only`` selects sources (``shopee``) or single accounts as the summary names them (``shopee/shop-880101``).
    That includes a source with an unset ``${VAR}`` (raised by ``validate_options``): it fails alone with
    the first ``file:line: key: ${VAR} is unset`` line; disabled or unselected ones are never looked at.
    ``only`` naming no source of the pipeline, a disabled one, or an account a source does not have, is a
    ConfigError saying what there is: the command line is wrong, so nothing runs.
    """
    selected: dict[str, set[str]] = {}  # source -> accounts asked for (empty: all)
    for entry in only:
        name, _, account = entry.partition("/")
        selected.setdefault(name, set()).update([account] if account else [])
    unknown = set(selected) - {s.name for s in pipeline.sources}
    if unknown:
        raise config_mod.ConfigError(f"{pipeline.path}: --only names no source called {', '.join(sorted(unknown))}; "
                                     f"sources: {', '.join(s.name for s in pipeline.sources)}")
    if disabled := sorted(s.name for s in pipeline.sources if s.name in selected and not s.enabled):
        raise config_mod.ConfigError(f"{pipeline.path}: --only names {', '.join(disabled)}, set to `enabled: false` "
                                     f"there; set it to true (or remove the line) to run it")
    jobs, refused, no_account = [], [], []
    for src in pipeline.sources:
        if not src.enabled or (only and src.name not in selected):
            continue
        try:
            provider_cls = provider_for(registry, src)
            options = config_mod.validate_options(pipeline, src, provider_cls.options_model, provider_cls)
            pii_settings(src, provider_cls)
            provider = provider_cls(src.name, options)
            provider.check_source(src)
            accounts = provider.accounts()
        except Exception as exc:  # a plugin's bug here fails its own source only
            refused.append((src, exc))
            continue
        wanted = selected.get(src.name) or set(accounts)
        if missing := wanted - set(accounts):
            no_account.append(str(no_such_account(pipeline, "--only", src, missing, accounts)))
        jobs.extend(AccountJob(src, provider_cls, options, account) for account in accounts if account in wanted)
    if no_account:
        raise config_mod.ConfigError("\n".join(no_account))
    return jobs, refused
