r"""World folders: a calibrated world that every command can run on (docs/own-data.md).

``hatrade calibrate --data FILE --formula ... --out DIR`` writes a folder with

- ``world.toml``: the world as a solve configuration (:mod:`hatrade.io.config`): countries,
  TFP, labor, the calibrated trade-cost matrix, the household parameters, and the solve of
  beta at the calibration's R from the calibrated wages and beta. ``--world DIR`` (the same
  as ``--config DIR/world.toml``) is read by :func:`hatrade.io.config.load_config`, the one
  place every command resolves a world from;
- ``parameters.csv`` (the calibration vector with names), ``moments.csv`` (data against
  model moments), ``specification.json`` (formula, estimator, regressors),
  ``data/trade.csv`` and ``data/countries.csv`` (the data as used), ``fit.csv`` (model
  against data trade shares), ``calibration.json`` (convergence, path) and
  ``provenance.json`` (data file and its SHA-256, command, hatrade version, time).

Files are written through :class:`hatrade.io.folders.OutputFolder` (atomic, manifest).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["WORLD_FILE", "world_toml", "file_sha256", "is_world_folder", "config_file"]

#: The solve configuration inside a world folder.
WORLD_FILE = "world.toml"


def _toml_value(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return json.dumps(str(v))


def _table(name: str, items: dict) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in items.items())


def world_toml(
    name: str,
    countries: Sequence[str],
    tfp,
    labor,
    trade_costs,
    household: dict,
    *,
    R: float,
    beta: float,
    wages,
    income: dict | None = None,
) -> str:
    """The text of ``world.toml`` (floats written exactly, with ``repr``).

    ``household`` holds the keys of the configuration's ``[household]`` table (gamma,
    sigma_eps, psi_slope, phi, a_max, n_a); ``income`` those of ``[income]``. The solve
    is for beta at ``R``, starting at the calibrated ``beta`` and ``wages``.
    """
    d = np.asarray(trade_costs, float)
    parts = [
        f"# A calibrated world (hatrade world folder). Solve: beta at R = {R!r}.\n"
        f"name = {json.dumps(name)}\n",
        _table("household", household),
        _table(
            "world",
            {
                "countries": list(countries),
                "tfp": np.asarray(tfp, float),
                "labor": np.asarray(labor, float),
                "trade_costs": [list(map(float, row)) for row in d],
            },
        ),
        _table(
            "solve",
            {"solve_for": "beta", "R": float(R), "beta_guess": float(beta), "wages": wages},
        ),
    ]
    if income:
        parts.append(_table("income", income))
    return "\n".join(parts)


def file_sha256(path) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_world_folder(path) -> bool:
    """Whether ``path`` is a folder holding ``world.toml``."""
    p = Path(path)
    return p.is_dir() and (p / WORLD_FILE).is_file()


def config_file(path) -> Path:
    """The configuration file a path stands for: ``world.toml`` of a world folder, else
    the path itself."""
    p = Path(path)
    return p / WORLD_FILE if p.is_dir() and (p / WORLD_FILE).is_file() else p
