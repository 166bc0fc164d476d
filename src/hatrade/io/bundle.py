"""Bundles: a dict of results (arrays, tables, datasets, JSON-ready values) as arrays and
JSON metadata, and back; the form in which :class:`hatrade.io.cache.Cache` stores them.

:func:`encode_bundle` splits a bundle into arrays (for an ``.npz`` file, no pickles) and
JSON-ready metadata that says how to rebuild each value; :func:`decode_bundle` is its
inverse. Non-finite floats in the metadata are kept exactly (``{"__float__": "nan"}``).
"""

from __future__ import annotations

import math

import numpy as np

from hatrade.io.cache_entry import CacheError

__all__ = ["encode_bundle", "decode_bundle", "json_ready", "from_json"]


def json_ready(x):
    """``x`` as JSON-ready values (numpy converted; non-finite floats as ``{"__float__": repr}``)."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_ready(x.tolist())
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


def from_json(x):
    """Inverse of :func:`json_ready`."""
    if isinstance(x, dict):
        if set(x) == {"__float__"}:
            return float(x["__float__"])
        return {k: from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [from_json(v) for v in x]
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
                "name": json_ready(value.name) if not isinstance(value.name, str) else value.name,
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
                        "attrs": json_ready(dict(var.attrs)),
                    }
                )
            items[name] = {
                "type": "dataset",
                "variables": variables,
                "attrs": json_ready(dict(value.attrs)),
            }
        else:
            items[name] = {"type": "json", "value": json_ready(value)}
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

                data: dict = {}
                coords: dict = {}
                for k, v in enumerate(item["variables"]):
                    entry = (v["dims"], arrays[f"{name}__v{k}"], from_json(v["attrs"]))
                    (coords if v["coord"] else data)[v["name"]] = entry
                out[name] = xr.Dataset(data, coords=coords, attrs=from_json(item["attrs"]))
            elif t == "json":
                out[name] = from_json(item["value"])
            else:
                raise CacheError(f"unknown bundle item type {t!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise CacheError(f"bundle cannot be rebuilt: {err}") from None
    return out
