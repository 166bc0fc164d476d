"""The output folder of ``hatrade replicate``: which folders a run may write into.

A run writes into a new or empty folder, or into a previous replicate folder (updated stage
by stage). :data:`MARKER` is written when a run starts, so that a run interrupted before
writing ``replicate.json`` can be rerun into the same folder (and resumed from the results
cache).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

__all__ = [
    "ReplicateError",
    "MARKER",
    "KIND",
    "check_output_dir",
    "prepare_output_dir",
    "is_replicate_dir",
]

#: The ``kind`` of a replicate folder's ``replicate.json`` and marker.
KIND = "replicate"

#: Written into the output folder when a run starts.
MARKER = ".hatrade-replicate"


class ReplicateError(ValueError):
    """The output folder cannot be used, or the setup is invalid."""


def is_replicate_dir(path: Path) -> bool:
    """Whether ``path`` holds a previous run (its ``replicate.json`` or its marker)."""
    for name in ("replicate.json", MARKER):
        try:
            doc = json.loads((path / name).read_text(encoding="utf-8"))
            if doc.get("kind") == KIND:
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return False


def prepare_output_dir(
    out: Path, stage_names: Iterable[str] | None = None, started: str | None = None
) -> None:
    """Mark ``out`` as a replicate folder and remove the temporary folders that an
    interrupted run left (``.<stage>.*.tmp`` / ``.old``).

    Parameters
    ----------
    out : the output folder (created when needed).
    stage_names : the stages whose temporary folders are removed (default: all stages).
    started : the run's start time for the marker (default: now).
    """
    from hatrade.io.atomic import write_text
    from hatrade.replicate.context import now

    if stage_names is None:
        from hatrade.replicate.stages import STAGE_NAMES as stage_names
    stages = set(stage_names)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, json.dumps({"kind": KIND, "started": started or now()}) + "\n")
    for p in out.iterdir():
        if (
            p.is_dir()
            and p.name.startswith(".")
            and p.name.endswith((".tmp", ".old"))
            and p.name[1:].split(".", 1)[0] in stages
        ):
            shutil.rmtree(p, ignore_errors=True)


def check_output_dir(out) -> Path:
    """A new or empty folder, or a previous replicate folder (updated stage by stage).

    Raises
    ------
    ReplicateError
        ``out`` is a file, or a non-empty folder that is not a previous replicate folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReplicateError(
            f"output folder {out} exists and is not a folder; choose another --out."
        )
    if out.is_dir() and any(out.iterdir()) and not is_replicate_dir(out):
        raise ReplicateError(
            f"output folder {out} exists and holds other files (it is not a "
            "previous 'hatrade replicate' folder, which would be updated); "
            "choose a new or empty folder."
        )
    return out
