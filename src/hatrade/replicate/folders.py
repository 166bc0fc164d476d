"""The output folder of ``hatrade replicate``, under hatrade's one folder policy.

A run writes into a new or empty folder, or into a previous replicate folder (updated stage
by stage): :func:`hatrade.io.folders.prepare_output` with kind ``"replicate"``. The run
lists everything it writes (the stage folders, ``figures/``, the report and the summary
files) in the folder's manifest when it starts, so that a run interrupted before writing
``replicate.json`` can be rerun into the same folder (and resumed from the results cache),
and files the user put there are never replaced.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from hatrade.io.folders import OutputFolder, OutputFolderError, prepare_output

__all__ = [
    "ReplicateError",
    "KIND",
    "OUTPUT_FILES",
    "check_output_dir",
    "open_output_dir",
    "prepare_output_dir",
]

#: The ``kind`` of a replicate folder (its manifest and ``replicate.json``).
KIND = "replicate"

#: The files of a replicate folder besides one sub-folder per stage.
OUTPUT_FILES = ("figures/", "report.html", "replicate.json", "reproduction.csv", "reproduction.md")


class ReplicateError(ValueError):
    """The output folder cannot be used, or the setup is invalid."""


def open_output_dir(out) -> OutputFolder:
    """The output folder ``out`` for a run (checked before any work).

    Raises
    ------
    ReplicateError
        ``out`` is a file, a non-empty folder that is not a previous replicate folder, or
        cannot be written.
    """
    try:
        return prepare_output(out, KIND, what="'hatrade replicate'", update=True)
    except OutputFolderError as err:
        raise ReplicateError(str(err)) from None


def check_output_dir(out) -> Path:
    """A new or empty folder, or a previous replicate folder (updated stage by stage).

    Raises
    ------
    ReplicateError
        As :func:`open_output_dir`.
    """
    return open_output_dir(out).path


def prepare_output_dir(folder: OutputFolder, stage_names: Iterable[str]) -> None:
    """List what a run writes in ``folder``'s manifest and remove the temporary folders
    that an interrupted run left (``.<stage>.*.tmp`` / ``.old``). Call inside
    ``folder.session()``.

    Raises
    ------
    ReplicateError
        One of those paths exists but hatrade did not write it.
    """
    stages = list(stage_names)
    try:
        folder.claim(*(f"{s}/" for s in stages), *OUTPUT_FILES)
    except OutputFolderError as err:
        raise ReplicateError(str(err)) from None
    for p in folder.path.iterdir():
        if (
            p.is_dir()
            and p.name.startswith(".")
            and p.name.endswith((".tmp", ".old"))
            and p.name[1:].split(".", 1)[0] in stages
        ):
            shutil.rmtree(p, ignore_errors=True)
