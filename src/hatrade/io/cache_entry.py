r"""The files of a results-cache entry: how they are written, locked and verified.

An entry of :class:`hatrade.io.cache.Cache` is two files in ``<root>/<kind>/``:

``<key>.npz``
    The arrays (``numpy.savez``, no pickles).
``<key>.json``
    The *sealed* metadata: the bytes ``{"digest": "<D>", "entry": <BODY>}`` followed by a
    newline, where ``<BODY>`` is a JSON document (format, kind, key, label, package version,
    code revision, creation time, the size and SHA-256 of the ``.npz`` file, the name,
    dtype and shape of every array, and the result's own metadata: e.g. an equilibrium's
    :math:`\beta` and convergence flags) and ``<D>`` is the SHA-256 of ``<BODY>``'s exact
    bytes (:func:`seal`). It is still plain JSON, for people and for
    :meth:`~hatrade.io.cache.Cache.entries`.

Before anything of an entry is used, :func:`read_entry` checks, in this order:

1. the ``.json`` file is exactly the sealed form (its fixed prefix, 64 hex digits, fixed
   middle and suffix around a body) and the body's SHA-256 is the recorded digest;
2. the body names this :data:`FORMAT_VERSION`, kind and key;
3. the ``.npz`` file has the recorded size and SHA-256;
4. it holds exactly the recorded arrays, with the recorded dtypes and shapes.

So a change to any byte of either file (a disk error, a partial copy, a hand edit of a
single digit) is detected and the entry is not served. The digests guard against damage,
not against deliberate forgery (whoever edits a file can recompute them). Entries of an
older format (1 and 2: metadata without a digest) are *stale* (:class:`StaleEntry`):
recomputed, like damaged ones, but without a warning.

Writing (:func:`write_entry`): the arrays first, then the metadata that commits them, each
atomically (:func:`hatrade.io.atomic.write_bytes`). A write that fails or is interrupted
(an error, a full disk, Ctrl-C) removes both files: the entry is then absent, never half
written, and no temporary file is left. Writers and readers hold an exclusive lock on
``<root>/<kind>/.lock`` (:func:`entry_lock`, ``fcntl.flock``; none where the platform lacks
it), so two writers of one entry, in threads or processes, leave one complete version, and
a reader never pairs one writer's arrays with another's metadata. A process killed between
the two files leaves a pair whose digests disagree: found by the next read, removed and
recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from hatrade.io.atomic import file_mode, write_bytes

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: entries are written without a lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CacheError",
    "StaleEntry",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "seal",
    "unseal",
    "peek",
    "read_entry",
    "write_entry",
    "remove_entry",
    "entry_lock",
    "file_digest",
]

#: Version of the on-disk layout; entries of another format are recomputed. 2: keys by
#: :func:`~hatrade.io.fingerprint.fingerprint` (with the code revision). 3: sealed
#: metadata (a SHA-256 over the metadata too, see :func:`seal`).
FORMAT_VERSION = 3

#: Formats written by earlier versions (no metadata digest): stale, not damaged.
_LEGACY_FORMATS = (1, 2)

#: Name of the lock file in each kind's folder.
LOCK_NAME = ".lock"

_PREFIX = b'{"digest": "'
_MIDDLE = b'", "entry": '
_SUFFIX = b"}\n"
_DIGEST_END = len(_PREFIX) + 64
_BODY_START = _DIGEST_END + len(_MIDDLE)


class CacheError(ValueError):
    """A cache entry is invalid, or a value cannot be stored in the cache."""


class StaleEntry(CacheError):
    """A cache entry is intact but was written with older contents; it is recomputed."""


# ----------------------------------------------------------------------------- metadata


def seal(doc: dict) -> bytes:
    """The bytes of a ``.json`` file holding ``doc`` with the SHA-256 of its exact text.

    Raises
    ------
    ValueError
        When ``doc`` is not strict JSON (e.g. holds a NaN).
    """
    body = json.dumps(doc, indent=1, allow_nan=False).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest().encode("ascii")
    return _PREFIX + digest + _MIDDLE + body + _SUFFIX


def unseal(data: bytes) -> dict:
    """The document sealed in ``data`` (see :func:`seal`), verified.

    Raises
    ------
    StaleEntry
        ``data`` is the unsealed metadata of an older format.
    CacheError
        Any other difference from a sealed document: a changed, missing or extra byte.
    """
    sealed = (
        len(data) >= _BODY_START + len(_SUFFIX)
        and data[: len(_PREFIX)] == _PREFIX
        and data[_DIGEST_END:_BODY_START] == _MIDDLE
        and data.endswith(_SUFFIX)
    )
    if not sealed:
        _refuse_unsealed(data)
    body = data[_BODY_START : len(data) - len(_SUFFIX)]
    if hashlib.sha256(body).hexdigest().encode("ascii") != data[len(_PREFIX) : _DIGEST_END]:
        raise CacheError("metadata checksum mismatch (the .json file was changed)")
    try:
        doc = json.loads(body.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError is a ValueError
        raise CacheError(f"metadata unreadable: {err}") from None
    if not isinstance(doc, dict):
        raise CacheError("metadata is not an object")
    return doc


def _refuse_unsealed(data: bytes) -> None:
    """Raise :class:`StaleEntry` for the metadata of an older format, else CacheError."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError:
        raise CacheError("metadata damaged or truncated (not a sealed JSON document)") from None
    if isinstance(doc, dict) and doc.get("format") in _LEGACY_FORMATS:
        raise StaleEntry(
            f"written in cache format {doc['format']} (metadata without a checksum); "
            f"this version writes format {FORMAT_VERSION}"
        )
    raise CacheError("metadata lacks its checksum (not a sealed document)")


def peek(data: bytes) -> dict | None:
    """The document in a ``.json`` file, unverified (sealed or of an older format), or
    None; for listings only, never for results."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("entry"), dict):
        doc = doc["entry"]
    return doc if isinstance(doc, dict) else None


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


# ----------------------------------------------------------------------------- entries


def read_entry(npz: Path, meta_path: Path, kind: str, key: str) -> tuple[dict, dict, str] | None:
    """The verified entry: ``(arrays, document, digest of the .json file)``, or None when
    there is none (see the module docstring for the checks).

    Raises
    ------
    StaleEntry, CacheError
        The entry is of an older format, or damaged (any check failed).
    PermissionError
        The metadata cannot be read: the folder, not the entry, is at fault.
    """
    try:
        data = meta_path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        if npz.exists():
            raise CacheError("metadata missing (an interrupted write)") from None
        return None
    except PermissionError:
        raise
    except OSError as err:
        raise CacheError(f"metadata unreadable: {err}") from None
    doc = unseal(data)
    for field_, want in (("format", FORMAT_VERSION), ("kind", kind), ("key", key)):
        if doc.get(field_) != want:
            raise CacheError(f"{field_} is {doc.get(field_)!r}, expected {want!r}")
    try:
        blob = npz.read_bytes()
    except OSError as err:
        raise CacheError(f"array file unreadable: {err}") from None
    if len(blob) != doc.get("size"):
        raise CacheError(f"array file has {len(blob)} bytes, expected {doc.get('size')}")
    if hashlib.sha256(blob).hexdigest() != doc.get("sha256"):
        raise CacheError("array file checksum mismatch")
    return _arrays(blob, doc.get("arrays")), doc, hashlib.sha256(data).hexdigest()


def _arrays(blob: bytes, spec) -> dict:
    """The arrays of a verified ``.npz`` file, checked against their recorded list."""
    if not isinstance(spec, dict):
        raise CacheError("metadata lacks the array list")
    arrays = {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            if set(z.files) != set(spec):
                raise CacheError(
                    f"arrays {sorted(z.files)} differ from the recorded {sorted(spec)}"
                )
            for name in z.files:
                a, s = z[name], spec[name]
                if not isinstance(s, dict) or (str(a.dtype), list(a.shape)) != (
                    s.get("dtype"),
                    s.get("shape"),
                ):
                    raise CacheError(f"array {name!r} is {a.dtype}{list(a.shape)}, recorded {s}")
                arrays[name] = a
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, CacheError):
            raise
        raise CacheError(f"array file damaged: {err}") from None
    return arrays


def write_entry(npz: Path, meta_path: Path, blob: bytes, sealed: bytes) -> None:
    """Write an entry: the arrays, then the sealed metadata that commits them, each
    atomically; on any failure or interrupt both files are removed (the entry is absent,
    never half written) and the error is raised. Call it under :func:`entry_lock`."""
    try:
        write_bytes(npz, blob)
        write_bytes(meta_path, sealed)
    except BaseException:
        remove_entry(npz, meta_path)
        raise


def remove_entry(npz: Path, meta_path: Path) -> None:
    """Remove both files of an entry (the metadata first); errors are ignored."""
    for p in (meta_path, npz):
        with contextlib.suppress(OSError):
            p.unlink()


@contextlib.contextmanager
def entry_lock(folder: Path, *, create: bool) -> Iterator[None]:
    """Hold the exclusive lock of a kind's folder (``folder/.lock``) in the ``with`` block.

    ``create``: create the folder and the lock file (for writers; errors are raised). A
    reader (``create=False``) goes on without the lock when the folder or the lock file
    is absent or read-only: then nobody can be writing there.
    """
    fd = None
    if fcntl is not None:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, file_mode())
        except OSError:
            if create:
                raise
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks (some network ones): go on
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)
