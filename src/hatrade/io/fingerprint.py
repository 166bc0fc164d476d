r"""Fingerprints: the one way hatrade names a result by everything that determines it.

The results cache (:mod:`hatrade.io.cache`), batch runs (:mod:`hatrade.io.batch`) and
calibration grids (:mod:`hatrade.calibration.grid`) all decide "is this result still
valid?" the same way: by comparing fingerprints,

.. math::

    \mathrm{fingerprint} = \mathrm{sha256}\big(\mathrm{JSON}(\text{kind},
    \text{layout}, \text{hatrade version}, \text{code revision}, \text{canonical(inputs)})\big),

where :func:`canonical` describes the inputs deterministically (arrays by the SHA-256 of
their bytes with dtype and shape, floats exactly, dictionaries with sorted keys) and
:func:`code_revision` is a SHA-256 of the source of the numerical packages. So equal
inputs computed by the same code give equal fingerprints on every machine; any change to
an input, however small, or to the code that computes the result gives another one, and a
result stored by other code is never taken for today's.

Public names
------------
:func:`canonical`
    A JSON-ready, deterministic description of a value.
:func:`fingerprint`
    ``fingerprint(kind, inputs, length=64)``: the hex digest above.
:func:`code_revision`
    The revision of the numerical code (computed once per process).
:class:`FingerprintError`
    A value cannot be described.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.resources
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "canonical",
    "fingerprint",
    "code_revision",
    "FingerprintError",
    "FINGERPRINT_LAYOUT",
    "REVISION_PACKAGES",
]

#: Version of the fingerprint document's layout (part of every fingerprint).
FINGERPRINT_LAYOUT = 2

#: Sub-packages of ``hatrade`` whose Python source makes up :func:`code_revision`; the
#: CSV files under ``hatrade/data`` are added.
REVISION_PACKAGES = ("data", "core", "solve", "analysis", "welfare", "calibration")


class FingerprintError(ValueError):
    """A value cannot be described for a fingerprint (its type is named)."""


# ----------------------------------------------------------------------------- canonical


def _array_digest(a: np.ndarray) -> dict:
    a = np.asarray(a)
    if a.dtype == object:
        return {"__list__": canonical(a.tolist())}
    if a.dtype.kind in "fc":
        a = a.astype(np.result_type(a.dtype, np.float64))
    b = np.ascontiguousarray(a)
    if b.dtype.byteorder == ">":
        b = b.astype(b.dtype.newbyteorder("<"))
    return {
        "__array__": str(b.dtype),
        "shape": list(b.shape),
        "sha256": hashlib.sha256(b.tobytes()).hexdigest(),
    }


def _float(x: float):
    x = float(x)
    if math.isfinite(x):
        return x
    return {"__float__": repr(x)}


def _pandas(obj):
    """A pandas DataFrame or Series described, or None for another array-like."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return {
            "__frame__": {
                "columns": [str(c) for c in obj.columns],
                "index": canonical(list(map(str, obj.index))),
                "values": [canonical(obj[c].to_numpy()) for c in obj.columns],
            }
        }
    if isinstance(obj, pd.Series):
        return {
            "__series__": {
                "index": [str(i) for i in obj.index],
                "values": _array_digest(obj.to_numpy()),
            }
        }
    return None


def _model_object(obj):
    """A :class:`~hatrade.core.params.World` or :class:`~hatrade.core.params.Household`
    described, or None for anything else."""
    from hatrade.core.params import Household, World

    if isinstance(obj, World):
        return {
            "__world__": {
                "countries": list(obj.countries),
                "tfp": _array_digest(obj.tfp),
                "labor": _array_digest(obj.labor),
                "d": _array_digest(obj.d),
                "tariffs": None if obj.tariffs is None else _array_digest(obj.tariffs),
                "financial": obj.financial,
                # policy instruments: only when set, so that fingerprints without them stay
                **({"rebate": obj.rebate} if obj.rebate != "lump-sum" else {}),
                **(
                    {"labor_tax": _array_digest(obj.labor_tax)} if obj.labor_tax is not None else {}
                ),
            }
        }
    if isinstance(obj, Household):
        return {"__household__": canonical(obj.to_dict())}
    return None


def canonical(obj: Any) -> Any:
    """A JSON-ready, deterministic description of ``obj`` (for hashing).

    Handles None, bool, int, float (exact; NaN and infinities tagged), str, enums, paths,
    numpy scalars and arrays (by the SHA-256 of their bytes, with dtype and shape), JAX
    arrays, pandas Series/DataFrames, lists/tuples, dicts (keys as strings, sorted by the
    JSON encoder), :class:`~hatrade.core.params.World` (countries, TFP, labor, trade costs,
    tariffs, financial regime; not ``meta``), :class:`~hatrade.core.params.Household`,
    :class:`~hatrade.core.income.IncomeProcess` and other dataclasses (field by field).

    Raises
    ------
    FingerprintError
        For a value of another type (the type is named in the message).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return canonical(obj.value)
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return _float(obj)
    if isinstance(obj, Path):
        return str(obj)
    model = _model_object(obj)
    if model is not None:
        return model
    if isinstance(obj, np.ndarray):
        return _array_digest(obj)
    if hasattr(obj, "__array__") and hasattr(obj, "shape") and hasattr(obj, "dtype"):
        table = _pandas(obj)
        return table if table is not None else _array_digest(np.asarray(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f"__{type(obj).__name__}__": {
                f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            }
        }
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    raise FingerprintError(
        f"cannot describe a value of type {type(obj).__name__} for a "
        "fingerprint; use numbers, strings, arrays, lists, dicts, World or "
        "Household."
    )


# ----------------------------------------------------------------------------- revision


def _source_files(root) -> list[tuple[str, Any]]:
    """(relative name, traversable) of every file under ``root``, recursively, sorted."""
    out = []
    stack = [("", root)]
    while stack:
        prefix, node = stack.pop()
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    stack.append((name + "/", child))
            else:
                out.append((name, child))
    return sorted(out, key=lambda t: t[0])


@functools.cache
def code_revision() -> str:
    """The revision of the code that computes hatrade's numbers: a SHA-256 (64 hex digits).

    It hashes the names and bytes of every ``.py`` file of the sub-packages
    :data:`REVISION_PACKAGES` (``core``, ``solve``, ``analysis``, ``welfare``,
    ``calibration``) and of every ``.csv`` file under ``hatrade/data``, found through
    :mod:`importlib.resources` (so it works from a source tree and from an installed
    package alike). Computed once per process.
    """
    h = hashlib.sha256()
    root = importlib.resources.files("hatrade")
    parts = [(pkg, ".py") for pkg in REVISION_PACKAGES] + [("data", ".csv")]
    for pkg, suffix in parts:
        node = root / pkg
        if not node.is_dir():
            continue
        for name, f in _source_files(node):
            if name.endswith(suffix):
                data = f.read_bytes()
                h.update(f"{pkg}/{name}\0{len(data)}\0".encode())
                h.update(data)
    return h.hexdigest()


# ----------------------------------------------------------------------------- fingerprint


def fingerprint(kind: str, inputs: Any, length: int = 64, *, revision: bool = True) -> str:
    """The fingerprint (``length`` hex digits) of a result of ``kind`` determined by ``inputs``.

    The package version, :data:`FINGERPRINT_LAYOUT` and :func:`code_revision` are part of
    it, so a result computed by other code never has today's fingerprint.

    Parameters
    ----------
    kind : str
        Family of results, e.g. ``"equilibrium"`` or ``"batch-run"``.
    inputs : any value :func:`canonical` describes
        Everything that determines the result.
    length : int
        Number of hex digits kept (64: the whole SHA-256).
    revision : bool
        Include :func:`code_revision`. False only for what is not a result but a way to
        one (a checkpoint's specification: resuming it under other code is allowed).
    """
    from hatrade import __version__

    doc = {
        "kind": kind,
        "layout": FINGERPRINT_LAYOUT,
        "hatrade_version": __version__,
        "code_revision": code_revision() if revision else None,
        "inputs": canonical(inputs),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
