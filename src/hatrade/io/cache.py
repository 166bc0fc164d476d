r"""A content-addressed results cache: solved equilibria, household solutions and other
results on disk.

Every cached result is stored under a *key*, its fingerprint
(:func:`hatrade.io.fingerprint.fingerprint`):

.. math::

    \mathrm{key} = \mathrm{sha256}\big(\mathrm{JSON}(\text{kind}, \text{hatrade version},
    \text{code revision}, \text{inputs})\big),

where ``inputs`` holds the model primitives (the :class:`~hatrade.core.params.World` arrays,
the :class:`~hatrade.core.params.Household`, the income process), the solve options
(tolerances, what is solved for, fixed prices) and, for results derived from another
result, that result's key. Arrays enter through the SHA-256 of their bytes (with dtype and
shape), floats through their exact ``repr``, dictionaries with sorted keys; so equal
inputs give equal keys on every machine and any change, however small, gives another key.
The *code revision* (:func:`hatrade.io.fingerprint.code_revision`, a hash of the source of
the numerical packages) is part of every key: an entry computed by other code is never
served. Starting points and warm starts are *not* part of the key: they change how a
result is found, not what it is (up to the solver tolerance, which is).

An entry is two files in ``<root>/<kind>/``: ``<key>.npz`` (the arrays) and ``<key>.json``
(the metadata: format, kind, key, versions, creation time, the size and SHA-256 of the
``.npz`` file, every array's name, dtype and shape, and the result's own JSON-ready
metadata, such as an equilibrium's :math:`\beta`, its convergence flags or a welfare
summary). See :mod:`hatrade.io.cache_entry` for the details.

**How entries are verified.** Every stored byte that a result depends on is checked before
the result is used. The ``.json`` file is *sealed*: it records the SHA-256 of its own
metadata text, and that text records the size and SHA-256 of the ``.npz`` file; so a change
to any byte of either file (a flipped bit on disk, a partial copy, one digit edited by hand)
is detected. Loading also checks the format, kind and key, and every array's dtype and
shape (against the metadata and, for equilibria, against the world and household they are
for). An entry that fails any check is reported in the log (a warning naming the kind and
key), removed, and recomputed: it is never served. Entries of an older format (no metadata
checksum) are recomputed too (logged at INFO, counted as ``stale:<kind>``). The checksums
guard against damage, not against deliberate forgery.

**Writes and faults.** An entry is written under a lock of its kind's folder (two writers
of one entry, in threads or processes, leave one complete version), the arrays first and
then the metadata that commits them, each atomically; a write that fails or is interrupted
leaves no entry (never half of one) and no temporary file. When the cache folder cannot be
used (read-only, not a folder, a full disk, no permission), the run goes on without storing
results: one warning names the folder, the reason and the fix (:meth:`Cache.check`).

Equilibria are stored and rebuilt by :mod:`hatrade.io.equilibrium_store`
(:func:`~hatrade.io.equilibrium_store.cached_equilibrium`).

Location: ``$HATRADE_CACHE`` if set, else ``$XDG_CACHE_HOME/hatrade``, else
``~/.cache/hatrade``; or any folder given to :class:`Cache`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import io
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hatrade.io import fingerprint as revision  # the module: code_revision() looked up at call time
from hatrade.io.bundle import decode_bundle, encode_bundle, from_json, json_ready
from hatrade.io.cache_entry import (
    FORMAT_VERSION,
    CacheError,
    StaleEntry,
    entry_lock,
    file_digest,
    peek,
    read_entry,
    remove_entry,
    seal,
    write_entry,
)
from hatrade.io.fingerprint import canonical, fingerprint

__all__ = [
    "Cache",
    "CacheError",
    "CACHE_ENV",
    "FORMAT_VERSION",
    "default_cache_dir",
    "canonical",
    "fingerprint",
    "encode_bundle",
    "decode_bundle",
    "StaleEntry",
]

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder.
CACHE_ENV = "HATRADE_CACHE"

_KIND_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def default_cache_dir() -> Path:
    """``$HATRADE_CACHE``, else ``$XDG_CACHE_HOME/hatrade``, else ``~/.cache/hatrade``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "hatrade"
    return Path.home() / ".cache" / "hatrade"


# ----------------------------------------------------------------------------- the cache


class _Usability:
    """Whether a cache folder can be used: shared by a :class:`Cache` and its copies (the
    views of other threads), so that a folder found unusable is warned about once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reason: str | None = None  # why results are not stored (None: they are)
        self.unreadable = False  # the folder cannot be read either


def _reason(err: BaseException) -> str:
    """An OSError in words: its message without the path, e.g. "Read-only file system"."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


class Cache:
    """A results cache in a folder (see the module docstring).

    Parameters
    ----------
    root : path-like, optional
        Folder of the cache (created when first written). Default :func:`default_cache_dir`.
    read : bool
        Use stored results. ``False`` (``--no-cache``) recomputes everything; the fresh
        results still replace the stored ones when ``write`` is True.
    write : bool
        Store new results.

    Attributes
    ----------
    stats : collections.Counter
        ``hit:<kind>``, ``miss:<kind>``, ``corrupt:<kind>``, ``stale:<kind>`` (intact
        entries of older contents, see :class:`StaleEntry`), ``write:<kind>`` counts.
    events : list of dict
        One record per lookup: kind, key, label, outcome (hit, miss, corrupt, stale, off),
        seconds.

    Notes
    -----
    A folder that cannot be used (not a folder, read-only, no permission, a full disk) does
    not stop a computation: the first failure logs one warning (the folder, the reason and
    the fix), and from then on this cache and its copies store nothing (:attr:`write`
    becomes False; :attr:`read` too when the folder cannot be read). :meth:`check` finds
    this out before a run.
    """

    def __init__(self, root=None, *, read: bool = True, write: bool = True):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self._read = bool(read)
        self._write = bool(write)
        self._usability = _Usability()
        self.stats: Counter = Counter()
        self.events: list[dict] = []

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r}, read={self.read}, write={self.write})"

    @property
    def read(self) -> bool:
        """Stored results are used (asked for, and the folder can be read)."""
        return self._read and not self._usability.unreadable

    @read.setter
    def read(self, value: bool) -> None:
        self._read = bool(value)

    @property
    def write(self) -> bool:
        """New results are stored (asked for, and the folder can be written)."""
        return self._write and self._usability.reason is None

    @write.setter
    def write(self, value: bool) -> None:
        self._write = bool(value)

    @property
    def unusable(self) -> str | None:
        """Why the folder cannot be written (e.g. "Read-only file system"), or None."""
        return self._usability.reason

    # --- the folder
    def check(self) -> bool:
        """Whether results can be stored: creates the folder and a probe file in it (removed
        at once).

        When they cannot (the folder is a file, read-only, not permitted), one warning is
        logged and this cache and its copies go on without storing results. Nothing is
        probed when writing is off.

        Returns
        -------
        bool
            :attr:`write`.
        """
        if not self.write:
            return False
        try:
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            self._give_up(err, unreadable=not os.path.isdir(self.root))
        return self.write

    def _give_up(self, err: BaseException, *, unreadable: bool = False) -> None:
        """Stop storing results (and reading them, when ``unreadable``); warn the first
        time only."""
        u = self._usability
        with u.lock:
            first = u.reason is None
            if first:
                u.reason = _reason(err)
            u.unreadable = u.unreadable or unreadable
        if first:
            log.warning(
                "cache folder %s cannot be used (%s): this run goes on without storing "
                "results in it%s. To keep results between runs, give a writable folder with "
                "--cache-dir DIR (or $%s; in Python, Cache(DIR), or cache=False for none).",
                self.root,
                u.reason,
                " or reading from it" if u.unreadable else "",
                CACHE_ENV,
            )

    # --- paths
    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        if not kind or set(kind) - _KIND_CHARS:
            raise CacheError(
                f"cache kind {kind!r} is not allowed: use lower-case letters, digits, '_' and '-'."
            )
        if len(key) != 64 or set(key) - set("0123456789abcdef"):
            raise CacheError(f"cache key {key!r} is not a SHA-256 hex digest.")
        d = self.root / kind
        return d / f"{key}.npz", d / f"{key}.json"

    def key(self, kind: str, **inputs) -> str:
        """:func:`fingerprint` of ``inputs`` for ``kind``."""
        return fingerprint(kind, inputs)

    def contains(self, kind: str, key: str) -> bool:
        """Whether a (complete-looking) entry exists; it is verified only by :meth:`load`."""
        npz, meta = self._paths(kind, key)
        try:
            return npz.is_file() and meta.is_file()
        except OSError:
            return False

    # --- load / store
    def _report(self, kind: str, key: str, reason: str, *, stale: bool = False) -> None:
        """Log and count an entry that is not used."""
        if stale:
            log.info(
                "cache entry %s/%s is stale (%s); it is removed and recomputed",
                kind,
                key[:12],
                reason,
            )
        else:
            log.warning(
                "cache entry %s/%s is invalid (%s); it is removed and recomputed",
                kind,
                key[:12],
                reason,
            )
        self.stats[f"{'stale' if stale else 'corrupt'}:{kind}"] += 1

    def _discard(
        self, kind: str, key: str, reason: str, *, stale: bool = False, seen: str | None = None
    ) -> None:
        """Report an entry and remove it; with ``seen`` (the digest of the metadata file
        that was read) only if it is still that file, not one another writer put there
        since."""
        self._report(kind, key, reason, stale=stale)
        npz, meta = self._paths(kind, key)
        with contextlib.suppress(OSError), entry_lock(meta.parent, create=False):
            if seen is None or file_digest(meta) in (seen, None):
                remove_entry(npz, meta)

    def _load_entry(self, kind: str, key: str) -> tuple[dict, dict, str] | None:
        """The verified entry ``(arrays, document, digest of its metadata file)`` or None."""
        npz, meta_path = self._paths(kind, key)
        try:
            with entry_lock(meta_path.parent, create=False):
                try:
                    return read_entry(npz, meta_path, kind, key)
                except CacheError as err:
                    self._report(kind, key, str(err), stale=isinstance(err, StaleEntry))
                    remove_entry(npz, meta_path)
        except OSError as err:  # the folder, not an entry, cannot be read
            self._give_up(err, unreadable=True)
        return None

    def load(self, kind: str, key: str) -> tuple[dict, dict] | None:
        """The verified entry ``(arrays, meta)``, or None (absent, or invalid: then removed).

        Checks (see :mod:`hatrade.io.cache_entry`): the metadata file is sealed and its
        checksum matches; it names this format, kind and key; the ``.npz`` file has the
        recorded size and SHA-256; it holds exactly the recorded arrays, with the recorded
        dtypes and shapes.
        """
        entry = self._load_entry(kind, key)
        if entry is None:
            return None
        arrays, doc, _ = entry
        return arrays, from_json(doc.get("meta", {}))

    def store(
        self, kind: str, key: str, arrays: dict, meta: dict | None = None, label: str | None = None
    ) -> None:
        """Write an entry (see the module docstring): under the folder's lock, the arrays,
        then the sealed metadata that commits them; on failure neither is left.

        Raises
        ------
        CacheError
            A value that cannot be stored (an object array, metadata that is not JSON-ready).
        OSError
            The files cannot be written (:meth:`memo` then goes on without the cache).
        """
        from hatrade import __version__

        npz, meta_path = self._paths(kind, key)
        buf = io.BytesIO()
        clean = {}
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.dtype == object:
                raise CacheError(f"array {name!r} has dtype object; it cannot be cached.")
            clean[name] = a
        np.savez(buf, **clean)  # type: ignore[arg-type]
        blob = buf.getvalue()
        doc = {
            "format": FORMAT_VERSION,
            "kind": kind,
            "key": key,
            "label": label,
            "hatrade_version": __version__,
            "code_revision": revision.code_revision(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "size": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "arrays": {
                n: {"dtype": str(a.dtype), "shape": list(a.shape)} for n, a in clean.items()
            },
            "meta": json_ready(meta or {}),
        }
        sealed = seal(doc)
        with entry_lock(npz.parent, create=True):
            write_entry(npz, meta_path, blob, sealed)
        self.stats[f"write:{kind}"] += 1
        log.debug("cache: stored %s/%s (%s, %.1f MB)", kind, key[:12], label or "", len(blob) / 1e6)

    # --- memoization
    def _lookup(self, kind: str, key: str, decode, label) -> tuple[Any, str]:
        """``(result, "hit")``, or ``(None, outcome)`` with outcome miss, corrupt or stale."""
        corrupt_before = self.stats[f"corrupt:{kind}"]
        stale_before = self.stats[f"stale:{kind}"]
        entry = self._load_entry(kind, key)
        if entry is not None:
            arrays, doc, seen = entry
            try:
                result = decode(arrays, from_json(doc.get("meta", {})))
            except StaleEntry as err:
                self._discard(kind, key, str(err), stale=True, seen=seen)
            except (CacheError, KeyError, ValueError, TypeError) as err:
                self._discard(kind, key, f"cannot rebuild the result: {err}", seen=seen)
            else:
                self.stats[f"hit:{kind}"] += 1
                log.info("cache: loaded %s %s (%s)", kind, label or "", key[:12])
                return result, "hit"
        if self.stats[f"corrupt:{kind}"] > corrupt_before:
            return None, "corrupt"
        return None, "stale" if self.stats[f"stale:{kind}"] > stale_before else "miss"

    def memo(
        self,
        kind: str,
        inputs: dict,
        compute: Callable[[], Any],
        encode: Callable[[Any], tuple[dict, dict]] = encode_bundle,
        decode: Callable[[dict, dict], Any] = decode_bundle,
        *,
        label: str | None = None,
        key: str | None = None,
    ) -> tuple[Any, bool]:
        """Load the result determined by ``inputs``, or compute and store it.

        Parameters
        ----------
        kind : str
            Family of results (a sub-folder), e.g. ``"equilibrium"``.
        inputs : dict
            Everything that determines the result (see :func:`canonical`).
        compute : callable () -> result
        encode, decode : result <-> (arrays, meta); default: :func:`encode_bundle` for a
            dict of arrays, tables and JSON-ready values.
        label : str, optional
            Human-readable name for logs and :attr:`events`.
        key : str, optional
            A precomputed key (else :func:`fingerprint` of ``inputs``).

        Returns
        -------
        (result, hit)
            ``hit`` is True when the result was loaded. A folder that cannot be written
            does not fail the call: one warning, and the result is returned unstored.
        """
        key = key or fingerprint(kind, inputs)
        t0 = time.perf_counter()
        outcome = "off"
        if self.read:
            result, outcome = self._lookup(kind, key, decode, label)
            if outcome == "hit":
                self._event(kind, key, label, outcome, t0)
                return result, True
        self.stats[f"miss:{kind}"] += 1
        result = compute()
        if self.write:
            try:
                arrays, meta = encode(result)
                self.store(kind, key, arrays, meta, label=label)
            except CacheError as err:
                log.warning("cache: could not store %s %s: %s", kind, label or "", err)
            except OSError as err:
                self._give_up(err)
        self._event(kind, key, label, outcome, t0)
        return result, False

    def _event(self, kind: str, key: str, label, outcome: str, t0: float) -> None:
        self.events.append(
            {
                "kind": kind,
                "key": key,
                "label": label,
                "outcome": outcome,
                "seconds": time.perf_counter() - t0,
            }
        )

    # --- housekeeping
    def entries(self, kind: str | None = None) -> list[dict]:
        """Metadata of the stored entries (unverified): kind, key, label, created, size."""
        out: list[dict] = []
        if not os.path.isdir(self.root):
            return out
        kinds = [kind] if kind else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        for k in kinds:
            for p in sorted((self.root / k).glob("*.json")):
                try:
                    m = peek(p.read_bytes())
                except OSError:
                    m = None
                m = m or {"key": p.stem}
                out.append(
                    {"kind": k, **{f: m.get(f) for f in ("key", "label", "created", "size")}}
                )
        return out

    def clear(self, kind: str | None = None) -> int:
        """Remove stored entries (of one kind, or all); returns the number of files removed.
        The folders' lock files stay (another process may hold them)."""
        n = 0
        if not os.path.isdir(self.root):
            return 0
        kinds = [kind] if kind else [p.name for p in self.root.iterdir() if p.is_dir()]
        for k in kinds:
            d = self.root / k
            for p in list(d.glob("*.npz")) + list(d.glob("*.json")) + list(d.glob(".*.tmp")):
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
        return n

    def summary(self) -> dict:
        """Counts by outcome and kind: {"hit": {...}, "miss": {...}, ...}."""
        out: dict[str, dict[str, int]] = {}
        for k, v in self.stats.items():
            what, kind = k.split(":", 1)
            out.setdefault(what, {})[kind] = v
        return out
