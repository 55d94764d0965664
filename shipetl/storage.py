"""The folders a run writes (warehouse file's, lake, raw zone, tokens): checked before a run, named in its errors.

A folder that cannot be written fails every source the same way, so a run checks them first and says
which ``warehouse:`` setting to change; a write that fails later (a full disk, a folder made read-only
meanwhile) becomes one line naming the setting instead of a provider's "internal error".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb

from .config import PipelineConfig
from .errors import ShipetlError
from . import runs, warehouse
from .lake import owner_problem


def paths(pipeline: PipelineConfig) -> dict[str, Path]:
    """The folders a run writes, by setting name (the warehouse file's folder for ``warehouse.path``)."""
    w = pipeline.warehouse
    return {"warehouse.path": Path(w.path).absolute().parent, "warehouse.lake": Path(w.lake).absolute(),
            "warehouse.raw": Path(w.raw).absolute(), "warehouse.tokens": Path(w.tokens).absolute()}


def problems(pipeline: PipelineConfig) -> list[str]:
    """One line per folder of ``warehouse:`` a run could not create or write, naming the setting."""
    found = []
    if owner := owner_problem(Path(pipeline.warehouse.lake), Path(pipeline.warehouse.path), _committed(pipeline),
                              pipeline.path):
        found.append(f"{pipeline.path}: warehouse.lake: {owner}")
    if Path(pipeline.warehouse.path).is_dir():
        found.append(f"{pipeline.path}: warehouse.path: {pipeline.warehouse.path} is a folder; name the warehouse "
                     f"file in it (e.g. {Path(pipeline.warehouse.path) / 'warehouse.duckdb'})")
    for setting, folder in paths(pipeline).items():
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            found.append(f"{pipeline.path}: {setting}: {existing} is a file, not a folder")
        elif not os.access(existing, os.W_OK | os.X_OK):
            found.append(f"{pipeline.path}: {setting}: cannot write {existing} (permission denied); "
                         "point it at a writable folder")
    return found


# Failures of writing a file that the folder or its disk cause, not the data.
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}


def _committed(pipeline: PipelineConfig) -> set[str] | None:
    """The warehouse's commit ids (none for a warehouse not made yet); None while another process holds it."""
    try:
        rows = warehouse.query(Path(pipeline.warehouse.path), runs.COMMITTED_IDS, timeout=1)
    except (ShipetlError, duckdb.Error):  # busy, or not a warehouse: its first commit checks again, or says why
        return None
    return {commit_id for (commit_id,) in rows}


def write_error(pipeline: PipelineConfig, exc: Exception) -> ShipetlError | None:
    """A one-line error naming the ``warehouse:`` setting for a failure to write its folder, or the warehouse file
    if DuckDB cannot read it, else None."""
    if isinstance(exc, duckdb.Error) and "database file" in str(exc).lower():  # "not a valid", "Corrupt"
        return ShipetlError(f"the warehouse file {pipeline.warehouse.path} cannot be read ({str(exc).splitlines()[0]}); "
                            f"restore it from a backup, or move it aside to start over and then run "
                            f"`shipetl lake {pipeline.path} --rebuild`")
    if isinstance(exc, OSError):
        if exc.errno not in _WRITE_ERRNOS:
            return None
    elif not isinstance(exc, (duckdb.IOException, duckdb.PermissionException)):
        return None
    filename = str(exc.filename) if isinstance(exc, OSError) and exc.filename else None
    text = filename or str(exc)
    folders = paths(pipeline).items()
    # The folder the failing path is in (the deepest: data/lake before data/), else the nearest one under a
    # parent that could not be created.
    inside = [(s, f) for s, f in folders if str(f) in text]
    above = [(s, f) for s, f in folders if filename is not None and str(f).startswith(filename)]
    if inside:
        setting, folder = max(inside, key=lambda m: len(str(m[1])))
    elif above:
        setting, folder = min(above, key=lambda m: len(str(m[1])))
    else:
        return None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some space (warehouse.raw_keep_days deletes old raw pages after each run)"
    return ShipetlError(f"cannot write {setting} ({folder}): {reason}")
