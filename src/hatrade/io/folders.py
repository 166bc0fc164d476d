"""Output folders: the one policy for where hatrade may write, and what it may replace.

Policy
------
A command may write its results into a folder ``OUT`` when

* ``OUT`` does not exist (it is created, with its parents), or
* ``OUT`` is an empty folder, or
* ``OUT`` holds a *manifest* (:data:`MANIFEST`, ``OUT/.hatrade-manifest.json``) written by
  hatrade for the same *kind* of output (a previous ``hatrade solve`` folder for a solve,
  a batch folder for the same batch command, ...).

hatrade deletes or replaces only what its manifest lists. A write that would delete or
replace anything else (a file the user put there, the folder of another command) is
refused before any work, with one line naming the folder and what to do; a failure leaves
the folder as it was (whole folders are built aside and swapped in, single files are
written atomically, see :mod:`hatrade.io.atomic`).

Kinds in use: ``solve``, ``counterfactual``, ``elasticities``, ``households``,
``efficient`` (replaced whole); ``batch``, ``calibration-grid``, ``calibrate``,
``calibrate-micro`` (updated in place, resumable); ``table1`` (updated in place: only
its ``table1.csv`` is replaced); ``replicate`` is reserved for the
replication pipeline (in place; its marker files are in :data:`LEGACY_MARKERS`).

A folder written by a hatrade that predates manifests is recognised by its summary file
(:data:`LEGACY_MARKERS`, e.g. ``summary.json`` with ``"kind": "solve"``) and adopted: its
files count as listed, and the manifest is written with the next output.

Manifest
--------
JSON with ``kind``; ``files``: paths relative to ``OUT`` (``/``-separated), a path ending
in ``/`` standing for a sub-folder hatrade owns whole (e.g. ``runs/USA-cut/``);
``created`` and ``updated`` (UTC timestamps); ``hatrade_version``; ``manifest`` (its
layout, :data:`MANIFEST_LAYOUT`).

API
---
:func:`prepare_output` ``(path, kind, what=None, update=False) -> OutputFolder``
    Check, before any work, that ``path`` may take output of ``kind``; raises
    :class:`OutputFolderError` otherwise. ``what`` names the kind in messages (default
    ``'hatrade <kind>'``); ``update=True`` for folders updated in place rather than
    replaced whole.
:class:`OutputFolder`
    Two ways to write:

    *Whole folder* (solve, counterfactual, elasticities, households, efficient)::

        folder = prepare_output(out, "solve")
        ...                                    # compute
        with folder.replace() as tmp:          # a temporary sibling of OUT
            write every file into tmp
        # on success the manifest (listing every file of tmp) is added and tmp replaces
        # OUT in one move; on an exception OUT is untouched and tmp removed

    *In place* (batch, calibration grid, calibrations, replicate)::

        folder = prepare_output(out, "batch", update=True)
        with folder.session():                 # creates OUT and its manifest
            folder.claim("runs/USA-cut/")      # before another process writes there
            folder.write_text("batch_summary.csv", text)   # atomic, and listed
        # on an exception, OUT is removed again if this session created it and nothing
        # but the manifest was written

    :meth:`OutputFolder.check_paths` checks before any work that paths to be written in
    place are new or listed. :meth:`OutputFolder.claim` lists paths that other code writes (a checkpoint, a
    worker's sub-folder); :meth:`~OutputFolder.write_text`, :meth:`~OutputFolder.write_bytes`
    and :meth:`~OutputFolder.write_json` write and list in one step. Each refuses a path
    that exists but is not listed.
:func:`read_manifest` ``(path) -> dict | None``, :func:`write_manifest` ``(path, kind,
files)``
    The manifest of a folder, read (None when absent or invalid) and written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from hatrade.core.params import ParameterError
from hatrade.io.atomic import atomic_dir, write_bytes, write_json, write_text

__all__ = [
    "MANIFEST",
    "MANIFEST_LAYOUT",
    "LEGACY_MARKERS",
    "OutputFolder",
    "OutputFolderError",
    "prepare_output",
    "read_manifest",
    "write_manifest",
]

#: File name of the manifest in an output folder.
MANIFEST = ".hatrade-manifest.json"

#: Layout of the manifest (its ``"manifest"`` entry).
MANIFEST_LAYOUT = 1

#: Folders written before manifests existed, by kind: ``(file, kind in it or None)``; a
#: folder holding one of them (with that ``"kind"`` when not None) is adopted.
LEGACY_MARKERS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "solve": (("summary.json", "solve"),),
    "counterfactual": (("summary.json", "counterfactual"),),
    "elasticities": (("summary.json", "elasticities"),),
    "households": (("summary.json", "households"),),
    "efficient": (("summary.json", "efficient"),),
    "batch": (("batch_summary.json", "batch"),),
    "calibration-grid": (("grid.json", "calibration-grid"),),
    "calibrate": (("checkpoint.json", None),),
    "calibrate-micro": (("micro_checkpoint.json", None),),
    "replicate": (("replicate.json", "replicate"), (".hatrade-replicate", "replicate")),
}


class OutputFolderError(ParameterError):
    """An output folder cannot take this output (the message names it and what to do)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _is_leftover(name: str) -> bool:
    """A temporary file or folder of an interrupted atomic write (``.name.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith((".tmp", ".old"))


def _present(root: Path) -> list[str]:
    """Relative paths of the files (and empty folders, with ``/``) under ``root``, except
    the manifest and leftovers of interrupted atomic writes."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        dirnames[:] = [d for d in dirnames if not _is_leftover(d)]
        if prefix and not dirnames and not filenames:
            out.append(prefix)
        for f in filenames:
            if not _is_leftover(f) and not (not prefix and f == MANIFEST):
                out.append(prefix + f)
    return sorted(out)


def _covered(rel: str, listed: Iterable[str]) -> bool:
    return any(rel == f or (f.endswith("/") and rel.startswith(f)) for f in listed)


def read_manifest(path) -> dict | None:
    """The manifest of folder ``path`` (a dict with ``kind`` and ``files``), or None when
    there is none or it cannot be read."""
    try:
        doc = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("kind"), str)
        or not isinstance(doc.get("files"), list)
        or not all(isinstance(f, str) for f in doc["files"])
    ):
        return None
    return doc


def write_manifest(path, kind: str, files: Iterable[str], created: str | None = None) -> Path:
    """Write the manifest of folder ``path`` (atomically): ``kind`` and the listed ``files``."""
    from hatrade import __version__

    now = _now()
    return write_json(
        Path(path) / MANIFEST,
        {
            "manifest": MANIFEST_LAYOUT,
            "kind": kind,
            "files": sorted(set(files)),
            "created": created or now,
            "updated": now,
            "hatrade_version": __version__,
        },
    )


def _legacy(path: Path, kind: str) -> bool:
    for name, want in LEGACY_MARKERS.get(kind, ()):
        p = path / name
        if want is None and p.is_file():
            return True
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("kind") == want:
            return True
    return False


def _check_writable(out: Path) -> None:
    probe = out.absolute()
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputFolderError(f"cannot write the output folder {out}: {probe} is not writable.")


class OutputFolder:
    """An output folder that may take output of one kind (see the module docstring).

    Made by :func:`prepare_output`. Attributes: ``path``, ``kind``, ``what`` (the kind in
    messages), ``listed`` (the set of listed paths), ``created`` (of the manifest).
    """

    def __init__(
        self, path: Path, kind: str, what: str, listed: Iterable[str], created: str | None = None
    ):
        self.path = Path(path)
        self.kind = kind
        self.what = what
        self.listed: set[str] = set(listed)
        self.created = created

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r}, kind={self.kind!r})"

    # --- checks
    def unlisted(self) -> list[str]:
        """Paths in the folder that its manifest does not list (hatrade never touches them)."""
        if not self.path.is_dir():
            return []
        return [p for p in _present(self.path) if not _covered(p, self.listed)]

    def _refuse_unlisted(self, names: list[str]) -> None:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise OutputFolderError(
            f"output folder {self.path} holds {shown}, which hatrade did not "
            f"write (not in its {MANIFEST}); move "
            f"{'it' if len(names) == 1 else 'them'} away or choose "
            "another folder."
        )

    def check_paths(self, *rels: str) -> None:
        """Check, before any work, that ``rels`` may be written in place (each is new or
        listed); raises :class:`OutputFolderError` naming those that are not."""
        taken = []
        for rel in rels:
            is_dir = str(rel).endswith("/")
            rel = Path(rel).as_posix() + ("/" if is_dir else "")
            target = self.path / rel.rstrip("/")
            if _covered(rel, self.listed) or not (target.exists() or target.is_symlink()):
                continue
            if is_dir and target.is_dir():
                taken += [
                    p
                    for p in _present(self.path)
                    if p.startswith(rel) and not _covered(p, self.listed)
                ]
            else:
                taken.append(rel)
        if taken:
            self._refuse_unlisted(taken)

    def _own(self, rels: Iterable[str]) -> None:
        """List ``rels`` (checked: an existing path must already be listed)."""
        new = []
        for rel in rels:
            is_dir = str(rel).endswith("/")
            rel = Path(rel).as_posix() + ("/" if is_dir else "")
            if _covered(rel, self.listed):
                continue
            target = self.path / rel.rstrip("/")
            if is_dir and target.is_dir():  # a sub-folder whose files are all listed
                foreign = [
                    p
                    for p in _present(self.path)
                    if p.startswith(rel) and not _covered(p, self.listed)
                ]
                if foreign:
                    self._refuse_unlisted(foreign)
            elif target.exists():
                self._refuse_unlisted([rel])
            new.append(rel)
        if new:
            self.listed.update(new)
            self._save()

    def _save(self) -> None:
        self.created = self.created or _now()
        write_manifest(self.path, self.kind, self.listed, created=self.created)

    # --- whole folder
    @contextlib.contextmanager
    def replace(self) -> Iterator[Path]:
        """Build the folder in a temporary sibling and swap it in whole (with its manifest).

        Refused (:class:`OutputFolderError`) when the folder holds anything its manifest
        does not list, which the swap would delete.
        """
        extra = self.unlisted()
        if extra:
            self._refuse_unlisted(extra)
        with atomic_dir(self.path) as tmp:
            yield tmp
            files = _present(tmp)
            write_manifest(tmp, self.kind, files)
        self.listed = set(files)

    # --- in place
    @contextlib.contextmanager
    def session(self) -> Iterator["OutputFolder"]:
        """Create the folder (and its manifest) for writing in place.

        On an exception, when nothing but the manifest was written, the folder is removed
        again if this session created it (an empty folder that was there loses the
        manifest again); otherwise it is kept (e.g. to resume).
        """
        top = None  # the outermost folder this session creates
        probe = self.path.absolute()
        while not probe.exists():
            top, probe = probe, probe.parent
        had_manifest = (self.path / MANIFEST).exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._save()
        try:
            yield self
        except BaseException:
            if not _present(self.path):  # nothing but the manifest was written
                if top is not None:
                    shutil.rmtree(top, ignore_errors=True)
                elif not had_manifest:  # an empty folder that was there: left empty
                    with contextlib.suppress(OSError):
                        (self.path / MANIFEST).unlink()
            raise

    def claim(self, *rels: str) -> None:
        """List paths that other code writes (``"x/"``: a sub-folder owned whole)."""
        self._own(rels)

    def write_bytes(self, rel: str, data: bytes) -> Path:
        """Write ``data`` to ``rel`` (atomically) and list it."""
        self._own([rel])
        return write_bytes(self.path / rel, data)

    def write_text(self, rel: str, text: str) -> Path:
        """Write ``text`` to ``rel`` (atomically, UTF-8) and list it."""
        self._own([rel])
        return write_text(self.path / rel, text)

    def write_json(self, rel: str, obj: Any, indent: int | None = 1) -> Path:
        """Write ``obj`` as strict JSON to ``rel`` (atomically) and list it."""
        self._own([rel])
        return write_json(self.path / rel, obj, indent=indent)


def prepare_output(
    path, kind: str, what: str | None = None, *, update: bool = False
) -> OutputFolder:
    """Check, before any work, that ``path`` may take output of ``kind``.

    Parameters
    ----------
    path : path-like
    kind : str
        The kind of output (``"solve"``, ``"counterfactual"``, ``"batch"``, ...), recorded
        in the manifest.
    what : str, optional
        The kind in messages (default ``'hatrade <kind>'``).
    update : bool
        The folder is updated in place (:meth:`OutputFolder.session`; files hatrade did
        not write may stay there) rather than replaced whole (:meth:`OutputFolder.replace`;
        such files are refused here already).

    Returns
    -------
    OutputFolder

    Raises
    ------
    OutputFolderError
        ``path`` is a file; a non-empty folder without a manifest of this kind (nor a
        previous folder of this kind written before manifests); a folder of another kind;
        a folder to be replaced that holds files hatrade did not write; or its nearest
        existing parent is not writable.
    """
    out = Path(path)
    what = what if what is not None else f"'hatrade {kind}'"
    if out.exists() and not out.is_dir():
        raise OutputFolderError(
            f"output folder {out} exists and is not a folder; choose another --out."
        )
    _check_writable(out)
    if not out.is_dir() or not any(out.iterdir()):
        return OutputFolder(out, kind, what, ())
    manifest = read_manifest(out)
    folder = None
    if manifest is not None and manifest["kind"] == kind:
        folder = OutputFolder(out, kind, what, manifest["files"], manifest.get("created"))
    elif manifest is None and _legacy(out, kind):
        folder = OutputFolder(out, kind, what, _present(out))
    if folder is not None:
        extra = [] if update else folder.unlisted()
        if extra:  # the swap would delete them: refuse before any work
            folder._refuse_unlisted(extra)
        return folder
    verb = "updated" if update else "replaced"
    other = "" if manifest is None else f" (it holds hatrade {manifest['kind']!r} output)"
    raise OutputFolderError(
        f"output folder {out} exists and holds other files{other}; it is "
        f"not a previous {what} folder, which would be {verb}; choose a "
        "new or empty folder."
    )
