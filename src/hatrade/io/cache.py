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

An entry is two files in ``<root>/<kind>/``:

``<key>.npz``
    The arrays (``numpy.savez``, no pickles).
``<key>.json``
    Metadata: format, kind, key, package version, code revision, creation time, the
    SHA-256 and size of the ``.npz`` file, the name, dtype and shape of every array, and
    the result's JSON-ready metadata. It is written last (atomically), so it marks a
    complete entry.

Loading checks the metadata, the checksum, and every array's dtype and shape (against the
metadata and, for equilibria, against the world and household they are for). An entry
that fails any check (a partial write, a truncated or altered file, another format) is
reported in the log, removed, and recomputed; it is never used.

Equilibria are stored and rebuilt by :mod:`hatrade.io.equilibrium_store`
(:func:`~hatrade.io.equilibrium_store.cached_equilibrium`).

Location: ``$HATRADE_CACHE`` if set, else ``$XDG_CACHE_HOME/hatrade``, else
``~/.cache/hatrade``; or any folder given to :class:`Cache`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hatrade.io import fingerprint as _revision
from hatrade.io.atomic import write_bytes
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

#: Version of the on-disk layout; entries of another format are recomputed. 2: keys by
#: :func:`~hatrade.io.fingerprint.fingerprint` (with the code revision).
FORMAT_VERSION = 2

_KIND_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


class CacheError(ValueError):
    """A cache entry is invalid, or a value cannot be stored in the cache."""


class StaleEntry(CacheError):
    """A cache entry is intact but was written with older contents; it is recomputed."""


def default_cache_dir() -> Path:
    """``$HATRADE_CACHE``, else ``$XDG_CACHE_HOME/hatrade``, else ``~/.cache/hatrade``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "hatrade"
    return Path.home() / ".cache" / "hatrade"


# ----------------------------------------------------------------------------- bundles


def _json_ready(x):
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_ready(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if x is None or isinstance(x, str):
        return x
    raise CacheError(f"value of type {type(x).__name__} is not JSON-ready.")


def _from_json(x):
    if isinstance(x, dict):
        if set(x) == {"__float__"}:
            return float(x["__float__"])
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    return x


def _column_array(values, where: str) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype == object:
        items = list(a.ravel())
        if all(isinstance(v, str) for v in items):
            return np.asarray(items, dtype=str).reshape(a.shape)
        try:
            return a.astype(float)
        except (TypeError, ValueError):
            raise CacheError(f"{where}: a column of mixed objects cannot be cached.") from None
    if a.dtype.kind not in "biufcUSM":
        raise CacheError(f"{where}: dtype {a.dtype} cannot be cached.")
    return a


def encode_bundle(bundle: dict) -> tuple[dict, dict]:
    """Split a dict of results into arrays (for ``.npz``) and JSON metadata.

    Values may be numpy arrays, pandas DataFrames and Series, xarray Datasets, or
    JSON-ready values (numbers, strings, None, lists and dicts of them).

    Returns
    -------
    arrays : dict name -> ndarray
    meta : dict (JSON-ready) describing how to rebuild each value
    """
    import pandas as pd

    arrays: dict[str, np.ndarray] = {}
    items: dict[str, dict] = {}
    for name, value in bundle.items():
        if not isinstance(name, str) or "__" in name:
            raise CacheError(f"bundle key {name!r}: keys must be strings without '__'.")
        if isinstance(value, np.ndarray):
            arrays[name] = _column_array(value, name)
            items[name] = {"type": "array"}
        elif isinstance(value, pd.DataFrame):
            df = value
            index_names = None
            if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
                index_names = [n if n is not None else "index" for n in df.index.names]
                df = df.reset_index()
                df.columns = [str(c) for c in df.columns]
            cols = [str(c) for c in df.columns]
            if len(set(cols)) != len(cols):
                raise CacheError(f"{name}: duplicated column names cannot be cached.")
            for k, c in enumerate(df.columns):
                arrays[f"{name}__c{k}"] = _column_array(df[c].to_numpy(), f"{name}.{c}")
            items[name] = {"type": "frame", "columns": cols, "index": index_names}
        elif isinstance(value, pd.Series):
            arrays[f"{name}__values"] = _column_array(value.to_numpy(), name)
            arrays[f"{name}__index"] = _column_array(value.index.to_numpy(), f"{name}.index")
            items[name] = {
                "type": "series",
                "name": _json_ready(value.name) if not isinstance(value.name, str) else value.name,
            }
        elif _is_dataset(value):
            variables = []
            for k, (vname, var) in enumerate(
                list(value.data_vars.items()) + list(value.coords.items())
            ):
                arrays[f"{name}__v{k}"] = _column_array(var.values, f"{name}.{vname}")
                variables.append(
                    {
                        "name": str(vname),
                        "dims": [str(d) for d in var.dims],
                        "coord": vname in value.coords,
                        "attrs": _json_ready(dict(var.attrs)),
                    }
                )
            items[name] = {
                "type": "dataset",
                "variables": variables,
                "attrs": _json_ready(dict(value.attrs)),
            }
        else:
            items[name] = {"type": "json", "value": _json_ready(value)}
    return arrays, {"items": items}


def _is_dataset(x) -> bool:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, xr.Dataset)


def decode_bundle(arrays: dict, meta: dict) -> dict:
    """Inverse of :func:`encode_bundle`."""
    import pandas as pd

    out = {}
    try:
        for name, item in meta["items"].items():
            t = item["type"]
            if t == "array":
                out[name] = arrays[name]
            elif t == "frame":
                df = pd.DataFrame(
                    {c: arrays[f"{name}__c{k}"] for k, c in enumerate(item["columns"])},
                    columns=item["columns"],
                )
                if item.get("index"):
                    df = df.set_index(item["index"])
                out[name] = df
            elif t == "series":
                out[name] = pd.Series(
                    arrays[f"{name}__values"], index=arrays[f"{name}__index"], name=item.get("name")
                )
            elif t == "dataset":
                import xarray as xr

                data, coords = {}, {}
                for k, v in enumerate(item["variables"]):
                    entry = (v["dims"], arrays[f"{name}__v{k}"], _from_json(v["attrs"]))
                    (coords if v["coord"] else data)[v["name"]] = entry
                out[name] = xr.Dataset(data, coords=coords, attrs=_from_json(item["attrs"]))
            elif t == "json":
                out[name] = _from_json(item["value"])
            else:
                raise CacheError(f"unknown bundle item type {t!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise CacheError(f"bundle cannot be rebuilt: {err}") from None
    return out


# ----------------------------------------------------------------------------- the cache


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
    """

    def __init__(self, root=None, *, read: bool = True, write: bool = True):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.read = bool(read)
        self.write = bool(write)
        self.stats: Counter = Counter()
        self.events: list[dict] = []

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r}, read={self.read}, write={self.write})"

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
        return npz.is_file() and meta.is_file()

    # --- load / store
    def _discard(self, kind: str, key: str, reason: str, *, stale: bool = False) -> None:
        npz, meta = self._paths(kind, key)
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
        for p in (meta, npz):
            with contextlib.suppress(OSError):
                p.unlink()

    def load(self, kind: str, key: str) -> tuple[dict, dict] | None:
        """The verified entry ``(arrays, meta)``, or None (absent, or invalid: then removed).

        Checks: the metadata parses and names this format, kind and key; the ``.npz`` file
        has the recorded size and SHA-256; it holds exactly the recorded arrays, with the
        recorded dtypes and shapes.
        """
        npz, meta_path = self._paths(kind, key)
        if not meta_path.is_file():
            if npz.exists():  # an array file without its metadata: an interrupted write
                self._discard(kind, key, "metadata missing")
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            self._discard(kind, key, f"unreadable metadata: {err}")
            return None
        try:
            if not isinstance(meta, dict):
                raise CacheError("metadata is not an object")
            for field_, want in (("format", FORMAT_VERSION), ("kind", kind), ("key", key)):
                if meta.get(field_) != want:
                    raise CacheError(f"{field_} is {meta.get(field_)!r}, expected {want!r}")
            try:
                blob = npz.read_bytes()
            except OSError as err:
                raise CacheError(f"array file unreadable: {err}") from None
            if len(blob) != meta.get("size"):
                raise CacheError(f"array file has {len(blob)} bytes, expected {meta.get('size')}")
            if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                raise CacheError("array file checksum mismatch")
            spec = meta.get("arrays")
            if not isinstance(spec, dict):
                raise CacheError("metadata lacks the array list")
            arrays = {}
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                if set(z.files) != set(spec):
                    raise CacheError(
                        f"arrays {sorted(z.files)} differ from the recorded {sorted(spec)}"
                    )
                for name in z.files:
                    a = z[name]
                    s = spec[name]
                    if str(a.dtype) != s.get("dtype") or list(a.shape) != s.get("shape"):
                        raise CacheError(
                            f"array {name!r} is {a.dtype}{list(a.shape)}, recorded "
                            f"{s.get('dtype')}{s.get('shape')}"
                        )
                    arrays[name] = a
        except CacheError as err:
            self._discard(kind, key, str(err))
            return None
        except (ValueError, OSError, EOFError) as err:  # a damaged zip / npy
            self._discard(kind, key, f"array file damaged: {err}")
            return None
        return arrays, _from_json(meta.get("meta", {}))

    def store(
        self, kind: str, key: str, arrays: dict, meta: dict | None = None, label: str | None = None
    ) -> None:
        """Write an entry atomically (arrays first, then the metadata that commits it)."""
        from hatrade import __version__

        npz, meta_path = self._paths(kind, key)
        npz.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        clean = {}
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.dtype == object:
                raise CacheError(f"array {name!r} has dtype object; it cannot be cached.")
            clean[name] = a
        np.savez(buf, **clean)
        blob = buf.getvalue()
        doc = {
            "format": FORMAT_VERSION,
            "kind": kind,
            "key": key,
            "label": label,
            "hatrade_version": __version__,
            "code_revision": _revision.code_revision(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "size": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "arrays": {
                n: {"dtype": str(a.dtype), "shape": list(a.shape)} for n, a in clean.items()
            },
            "meta": _json_ready(meta or {}),
        }
        text = json.dumps(doc, indent=1, allow_nan=False)
        write_bytes(npz, blob)
        write_bytes(meta_path, text.encode("utf-8"))
        self.stats[f"write:{kind}"] += 1
        log.debug("cache: stored %s/%s (%s, %.1f MB)", kind, key[:12], label or "", len(blob) / 1e6)

    # --- memoization
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
            ``hit`` is True when the result was loaded.
        """
        key = key or fingerprint(kind, inputs)
        t0 = time.perf_counter()
        outcome = "off"
        if self.read:
            corrupt_before = self.stats[f"corrupt:{kind}"]
            entry = self.load(kind, key)
            if entry is not None:
                try:
                    result = decode(*entry)
                except StaleEntry as err:
                    self._discard(kind, key, str(err), stale=True)
                    outcome = "stale"
                except (CacheError, KeyError, ValueError, TypeError) as err:
                    self._discard(kind, key, f"cannot rebuild the result: {err}")
                else:
                    self.stats[f"hit:{kind}"] += 1
                    self.events.append(
                        {
                            "kind": kind,
                            "key": key,
                            "label": label,
                            "outcome": "hit",
                            "seconds": time.perf_counter() - t0,
                        }
                    )
                    log.info("cache: loaded %s %s (%s)", kind, label or "", key[:12])
                    return result, True
            if outcome != "stale":
                outcome = "corrupt" if self.stats[f"corrupt:{kind}"] > corrupt_before else "miss"
        self.stats[f"miss:{kind}"] += 1
        result = compute()
        if self.write:
            try:
                arrays, meta = encode(result)
                self.store(kind, key, arrays, meta, label=label)
            except (CacheError, OSError) as err:
                log.warning("cache: could not store %s %s: %s", kind, label or "", err)
        self.events.append(
            {
                "kind": kind,
                "key": key,
                "label": label,
                "outcome": outcome,
                "seconds": time.perf_counter() - t0,
            }
        )
        return result, False

    # --- housekeeping
    def entries(self, kind: str | None = None) -> list[dict]:
        """Metadata of the stored entries (unverified): kind, key, label, created, size."""
        out = []
        if not self.root.is_dir():
            return out
        kinds = [kind] if kind else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        for k in kinds:
            for p in sorted((self.root / k).glob("*.json")):
                try:
                    m = json.loads(p.read_text(encoding="utf-8"))
                    out.append(
                        {
                            "kind": k,
                            "key": m.get("key"),
                            "label": m.get("label"),
                            "created": m.get("created"),
                            "size": m.get("size"),
                        }
                    )
                except (OSError, ValueError):
                    out.append(
                        {"kind": k, "key": p.stem, "label": None, "created": None, "size": None}
                    )
        return out

    def clear(self, kind: str | None = None) -> int:
        """Remove stored entries (of one kind, or all); returns the number of files removed."""
        n = 0
        if not self.root.is_dir():
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
