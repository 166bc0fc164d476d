r"""Writing and reading solve results, atomically.

A solve folder holds four files whose names and columns are stable (scripts read them):

``summary.json``
    ``beta``; ``R`` (a number, or an object by country under financial autarky);
    ``wages`` and ``import_share`` (objects by country); ``fit`` (``corr``, ``rmse``,
    ``n_pairs`` of model against data log normalized trade, or ``null`` when there are no
    data for the countries); ``convergence``; ``parameters`` (household, world, income,
    solve options, and the calibration vector for a shipped calibration);
    ``hatrade_version``; ``created`` (UTC timestamp); ``name``; ``kind`` = ``"solve"``.
``trade.csv``
    One row per ordered pair (importer :math:`i`, exporter :math:`j`, diagonal included):
    ``importer``, ``exporter``, ``share`` (:math:`s_{ij} = M_{ij}/\sum_j M_{ij}`),
    ``log_normalized_model`` (:math:`\log s_{ij}/s_{ii}`), ``log_normalized_data``
    (:math:`\log X_{ij}/X_{ii}` from the data; empty where there is none, e.g. the
    diagonal).
``households.nc``
    Policies, choice probabilities and stationary distributions per country
    (:meth:`hatrade.Equilibrium.to_dataset`; NetCDF4 via h5netcdf).
``trade_fit.png``
    Model against data log normalized trade (the paper's Figure 2).

Everything is first written to a temporary folder next to the destination, which is then
moved into place with :func:`os.replace`: a reader never sees a half-written folder, and a
failure leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.io.atomic import atomic_dir, jsonable

__all__ = [
    "ResultsError",
    "SOLVE_FILES",
    "TRADE_COLUMNS",
    "trade_table_with_data",
    "trade_fit",
    "check_output_dir",
    "check_writers",
    "save_solve",
    "load_summary",
    "load_trade",
    "shares_matrix",
    "solve_summary",
]

log = logging.getLogger(__name__)

#: The files of a solve folder.
SOLVE_FILES: tuple[str, ...] = ("summary.json", "trade.csv", "households.nc", "trade_fit.png")

#: Columns of ``trade.csv``.
TRADE_COLUMNS: tuple[str, ...] = ("importer", "exporter", "share", "log_normalized_model",
                                  "log_normalized_data")

_KIND = "solve"


class ResultsError(ValueError):
    """An output folder cannot be written, or a results file cannot be read."""


# ----------------------------------------------------------------------------- tables

def _data_table(data_fit) -> pd.DataFrame | None:
    if data_fit is None or data_fit is False:
        return None
    if isinstance(data_fit, str):
        if data_fit != "ek":
            raise ResultsError(f"data_fit = {data_fit!r} is not allowed: use 'ek' (the shipped "
                               "Eaton-Kortum data), None, or a DataFrame with columns importer, "
                               "exporter, log_trade.")
        from hatrade.data import load_trade_data
        return load_trade_data()
    if isinstance(data_fit, pd.DataFrame):
        missing = [c for c in ("importer", "exporter", "log_trade") if c not in data_fit.columns]
        if missing:
            raise ResultsError(f"data table lacks column(s) {missing}; required: importer, "
                               "exporter, log_trade.")
        return data_fit
    raise ResultsError("data_fit must be 'ek', None or a DataFrame, got "
                       f"{type(data_fit).__name__}.")


def trade_table_with_data(eq, data_fit="ek") -> pd.DataFrame:
    r"""Model trade shares joined with the data, the content of ``trade.csv``.

    Parameters
    ----------
    eq : hatrade.Equilibrium
    data_fit : 'ek', None or pandas.DataFrame
        The data: ``'ek'`` for :func:`hatrade.data.load_trade_data`, a table with columns
        ``importer``, ``exporter``, ``log_trade`` (:math:`\log X_{ij}/X_{ii}`), or None.
        Only off-diagonal pairs whose two codes are countries of ``eq`` are used.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TRADE_COLUMNS`, :math:`M^2` rows, importer-major in the world's
        country order; ``log_normalized_data`` is NaN where there is no data.
    """
    table = eq.trade_table()
    table["log_normalized_data"] = np.nan
    data = _data_table(data_fit)
    if data is not None:
        d = data.loc[data["importer"] != data["exporter"], ["importer", "exporter", "log_trade"]]
        if d.duplicated(["importer", "exporter"]).any():
            dup = d.loc[d.duplicated(["importer", "exporter"]), ["importer", "exporter"]]
            raise ResultsError(f"data table has duplicated pairs, e.g. {dup.values.tolist()[:3]}.")
        lookup = {(i, j): float(y) for i, j, y in d.itertuples(index=False)}
        table["log_normalized_data"] = [
            lookup.get((i, j), np.nan) if i != j else np.nan
            for i, j in zip(table["importer"], table["exporter"])]
    return table[list(TRADE_COLUMNS)]


def trade_fit(table: pd.DataFrame) -> dict | None:
    r"""Fit of model to data log normalized trade over the pairs that have data.

    .. math::

        \mathrm{corr} = \mathrm{corr}(y^{model}_{ij}, y^{data}_{ij}), \qquad
        \mathrm{rmse} = \Big(\tfrac1n \sum_{ij} (y^{model}_{ij} - y^{data}_{ij})^2\Big)^{1/2}

    over the :math:`n` off-diagonal pairs with data, :math:`y = \log s_{ij}/s_{ii}`.

    Returns
    -------
    dict or None
        ``corr`` (None when either side has no variation or n < 2), ``rmse``, ``n_pairs``;
        None when no pair has data.
    """
    ok = table["log_normalized_data"].notna() & (table["importer"] != table["exporter"])
    if not ok.any():
        return None
    m = table.loc[ok, "log_normalized_model"].to_numpy(float)
    d = table.loc[ok, "log_normalized_data"].to_numpy(float)
    rmse = float(np.sqrt(np.mean((m - d) ** 2)))
    corr = None
    if m.size >= 2 and np.std(m) > 0 and np.std(d) > 0:
        corr = float(np.corrcoef(m, d)[0, 1])
    return {"corr": corr, "rmse": rmse, "n_pairs": int(m.size)}


# ----------------------------------------------------------------------------- atomic IO

def _is_solve_dir(path: Path) -> bool:
    try:
        with open(path / "summary.json") as fh:
            return json.load(fh).get("kind") == _KIND
    except (OSError, ValueError, AttributeError):
        return False


def check_writers() -> None:
    """Check that the NetCDF4 writer for ``households.nc`` (h5netcdf with h5py) is installed.

    Raises
    ------
    ResultsError
        When h5netcdf or h5py cannot be imported (the message says what to install).
    """
    import importlib.util

    missing = [m for m in ("h5netcdf", "h5py") if importlib.util.find_spec(m) is None]
    if missing:
        raise ResultsError(f"writing households.nc (NetCDF4) needs {' and '.join(missing)}; "
                           f"install with: pip install {' '.join(missing)}")


def check_output_dir(out_dir) -> Path:
    """Check, before any work, that a solve can be written to ``out_dir``.

    Allowed: a folder that does not exist yet (its parent is created when needed), an
    empty folder, or a previous solve folder (it is replaced as a whole).

    Raises
    ------
    ResultsError
        ``out_dir`` is a file, a non-empty folder that is not a solve folder (so that a
        mistyped ``--out`` never deletes unrelated files), or its parent cannot be written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"output folder {out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not _is_solve_dir(out):
        raise ResultsError(f"output folder {out} exists and holds other files (it is not a "
                           "previous solve folder, which would be replaced); choose a new or "
                           "empty folder.")
    parent = out.absolute().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ResultsError(f"cannot write the output folder {out}: {probe} is not writable.")
    return out


# ----------------------------------------------------------------------------- solve folder

def solve_summary(eq, name: str, fit: dict | None, parameters: dict | None = None) -> dict:
    """The content of ``summary.json`` (see the module docstring)."""
    from hatrade import __version__

    s = eq.summary()
    parameters = dict(parameters) if parameters else {}
    parameters.setdefault("household", eq.household.to_dict())
    parameters.setdefault("world", eq.world.to_dict())
    if "calibration" not in parameters and eq.world.meta.get("params") is not None:
        parameters["calibration"] = {"name": eq.world.meta.get("calibration"),
                                     "vector": list(eq.world.meta["params"]),
                                     "correct_germany": eq.world.meta.get("correct_germany")}
    return jsonable({
        "kind": _KIND,
        "name": name,
        "hatrade_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "countries": list(eq.countries),
        "financial": eq.world.financial,
        "beta": s["beta"],
        "R": s["R"],
        "wages": s["wages"],
        "import_share": s["import_share"],
        "fit": fit,
        "convergence": {k: s[k] for k in ("converged", "newton_iterations", "max_excess_demand",
                                          "household_solves", "jacobians", "seconds")},
        "parameters": parameters,
    })


def save_solve(eq, out_dir, name: str, data_fit="ek", parameters: dict | None = None) -> dict:
    """Write a solve folder (``summary.json``, ``trade.csv``, ``households.nc``,
    ``trade_fit.png``) atomically.

    Parameters
    ----------
    eq : hatrade.Equilibrium
    out_dir : path-like
        Destination folder (see :func:`check_output_dir` for what may already be there).
    name : str
        Name of the run (recorded in ``summary.json``).
    data_fit : 'ek', None or pandas.DataFrame
        Data to compare model trade with (see :func:`trade_table_with_data`).
    parameters : dict, optional
        The parameters used (e.g. :meth:`hatrade.io.config.SolveConfig.to_dict`); household and
        world are filled in from ``eq`` when absent, and the calibration vector when the
        world comes from :func:`hatrade.ek_world`.

    Returns
    -------
    dict
        The summary written to ``summary.json``.

    Raises
    ------
    ResultsError
        ``out_dir`` cannot hold a solve folder; nothing is written then.
    """
    from hatrade.plots.trade_fit import save_trade_fit

    check_writers()
    out = check_output_dir(out_dir)
    table = trade_table_with_data(eq, data_fit)
    fit = trade_fit(table)
    summary = solve_summary(eq, name, fit, parameters)
    ds = eq.to_dataset()
    ds.attrs.update({"name": name, "hatrade_version": summary["hatrade_version"],
                     "created": summary["created"]})
    with atomic_dir(out) as tmp:
        with open(tmp / "summary.json", "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2, allow_nan=False)
            fh.write("\n")
        table.to_csv(tmp / "trade.csv", index=False, na_rep="", float_format="%.17g")
        ds.to_netcdf(tmp / "households.nc", engine="h5netcdf")
        save_trade_fit(table, tmp / "trade_fit.png", fit=fit, title=f"Bilateral trade: {name}")
    log.info("wrote %s (%s)", out, ", ".join(SOLVE_FILES))
    return summary


def _solve_file(path, filename: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / filename
    if not p.is_file():
        raise ResultsError(f"{p} does not exist; expected a solve folder written by "
                           f"'hatrade solve' (with {', '.join(SOLVE_FILES)}).")
    return p


def load_summary(path) -> dict:
    """Read ``summary.json`` of a solve folder (``path``: the folder or the file).

    Raises
    ------
    ResultsError
        Missing file, invalid JSON, or JSON that is not a solve summary.
    """
    p = _solve_file(path, "summary.json")
    try:
        summary = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ResultsError(f"{p}: cannot read a solve summary ({err}).") from None
    if not isinstance(summary, dict) or summary.get("kind") != _KIND:
        raise ResultsError(f"{p} is not a solve summary written by 'hatrade solve' "
                           "(no \"kind\": \"solve\").")
    missing = [k for k in ("beta", "R", "wages", "import_share") if k not in summary]
    if missing:
        raise ResultsError(f"{p}: solve summary lacks key(s) {missing}.")
    return summary


def load_trade(path) -> pd.DataFrame:
    """Read ``trade.csv`` of a solve folder (``path``: the folder or the file), validated.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TRADE_COLUMNS`, one row per ordered pair (diagonal included).

    Raises
    ------
    ResultsError
        Missing file or columns, non-numeric or non-positive shares, duplicated or missing
        pairs (the message names the file and what is wrong).
    """
    p = _solve_file(path, "trade.csv")
    try:
        df = pd.read_csv(p, dtype={"importer": str, "exporter": str}, keep_default_na=False,
                         na_values={"share": [""], "log_normalized_model": [""],
                                    "log_normalized_data": [""]})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ResultsError(f"{p}: cannot read the trade table ({err}).") from None
    missing = [c for c in TRADE_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{p} lacks column(s) {missing}; required: {list(TRADE_COLUMNS)}.")
    for col in ("share", "log_normalized_model", "log_normalized_data"):
        try:
            df[col] = pd.to_numeric(df[col]).astype(float)
        except (ValueError, TypeError):
            raise ResultsError(f"{p}: column {col!r} has non-numeric entries.") from None
    s = df["share"].to_numpy(float)
    if not (np.isfinite(s) & (s > 0)).all():
        bad = df.loc[~(np.isfinite(s) & (s > 0)), ["importer", "exporter"]].values.tolist()[:5]
        raise ResultsError(f"{p}: column 'share' must be positive and finite; not so for {bad}.")
    if df.duplicated(["importer", "exporter"]).any():
        dup = df.loc[df.duplicated(["importer", "exporter"]), ["importer", "exporter"]]
        raise ResultsError(f"{p}: duplicated pairs, e.g. {dup.values.tolist()[:5]}.")
    countries = list(dict.fromkeys(df["importer"]))
    if set(df["exporter"]) != set(countries) or len(df) != len(countries) ** 2:
        raise ResultsError(f"{p}: expected one row per ordered pair of the countries "
                           f"{countries} ({len(countries) ** 2} rows, diagonal included), got "
                           f"{len(df)} rows.")
    return df[list(TRADE_COLUMNS)]


def shares_matrix(trade: pd.DataFrame, countries=None) -> tuple[np.ndarray, list[str]]:
    """The (M, M) trade-share matrix of a ``trade.csv`` table (importer rows).

    Parameters
    ----------
    trade : pandas.DataFrame
        As returned by :func:`load_trade`.
    countries : sequence of str, optional
        Row/column order; default: the table's importer order.
    """
    countries = list(dict.fromkeys(trade["importer"])) if countries is None else list(countries)
    piv = trade.pivot(index="importer", columns="exporter", values="share")
    missing = [c for c in countries if c not in piv.index]
    if missing:
        raise ResultsError(f"trade table has no rows for country code(s) {missing}; it has "
                           f"{list(piv.index)}.")
    return piv.loc[countries, countries].to_numpy(float), countries
