"""Atomic writes: the one way hatrade puts bytes on disk.

Every file is written to a temporary sibling (named before it is created, so that an
interrupt at any point leaves nothing behind), flushed and fsync'ed, given the permissions of
an ordinary new file (``0666 & ~umask``), then moved into place with :func:`os.replace`; a
folder is built in a temporary sibling and swapped in whole (:func:`atomic_dir`). A reader
never sees a half-written file or folder, and a failure (an exception, a full disk,
Ctrl-C) leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "write_bytes",
    "write_text",
    "write_json",
    "atomic_dir",
    "jsonable",
    "file_mode",
    "dir_mode",
]


def _umask() -> int:
    """The process's umask: read from ``/proc/self/status`` where it can be (setting it,
    even for a moment, would change the permissions of what other threads create), else
    by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions of an ordinary new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Permissions of an ordinary new folder: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


def _sibling(path: Path, suffix: str) -> Path:
    """A name for a temporary sibling of ``path``, unique to this call: named before it is
    created, so that whatever interrupts the creation, the cleanup knows what to remove."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}{suffix}"


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, :func:`os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (numpy converted, non-finite floats as null) atomically."""
    return write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(out_dir) -> Iterator[Path]:
    """Context manager: build a folder in a temporary sibling, then move it into place.

    On success the temporary folder replaces ``out_dir`` (an existing folder is first moved
    aside and removed after the swap); on any exception it is removed and ``out_dir`` is left
    as it was.
    """
    out = Path(out_dir)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(parent / out.name, ".tmp")
    try:
        os.mkdir(tmp, 0o700)
        yield tmp
        os.chmod(tmp, dir_mode())
        if out.exists():
            _swap_dir(tmp, out, parent)
        else:
            os.replace(tmp, out)
    except BaseException:
        _remove_tree(tmp)
        raise


def _swap_dir(tmp: Path, out: Path, parent: Path) -> None:
    """Put the folder ``tmp`` in the place of the existing folder ``out``; the old one is
    moved aside and removed. On failure ``out`` is put back as it was and the aside folder
    removed (kept only if putting back fails: then it holds the old folder)."""
    old = _sibling(parent / out.name, ".old")
    moved = old / "x"
    try:
        os.mkdir(old, 0o700)
        os.replace(out, moved)
        os.replace(tmp, out)
    except BaseException:
        if os.path.lexists(tmp):  # the new folder is not in place: put the old one back
            with contextlib.suppress(OSError):
                if os.path.lexists(moved) and not os.path.lexists(out):
                    os.replace(moved, out)
                old.rmdir()  # only when empty
        else:  # interrupted just after the swap: the new folder is in place
            _remove_tree(old)
        raise
    _remove_tree(old)


def _remove_tree(path: Path) -> None:
    """Remove a folder this module made; tried again when the first attempt fails or is
    interrupted (the interrupt is raised after the second attempt)."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    finally:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)


def jsonable(x):
    """Convert numpy scalars/arrays and non-finite floats (to None) for strict JSON."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x
