"""The pipeline file a new user starts from: ``shipetl init`` writes it; ``pipelines/daily.yaml`` is the repository's copy.

The template ships inside the package (``shipetl/daily.yaml``), so an installed shipetl has it without the
repository; ``python -m shipetl.docs`` writes the repository's copy from it, and ``tests/test_docs.py`` fails when
the two differ.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ShipetlError

TEMPLATE = Path(__file__).with_name("daily.yaml")
PLACE = Path("pipelines") / "daily.yaml"
"""Where the template goes under a project folder; its relative paths (``../data/...``) then point at ``data/`` beside."""


def template_text() -> str:
    """The starter pipeline file, as shipped."""
    return TEMPLATE.read_text(encoding="utf-8")


def write(folder: Path | str) -> Path:
    """Write the starter pipeline file to ``folder/pipelines/daily.yaml``; a file already there is left alone (an error)."""
    target = Path(folder) / PLACE
    if target.exists():
        raise ShipetlError(f"{target} exists already; edit it, or give shipetl init another folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template_text(), encoding="utf-8")
    except OSError as exc:
        raise ShipetlError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
