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

A counterfactual folder (:func:`save_counterfactual`; ``hatrade counterfactual``, each run
of ``hatrade batch``, the counterfactual stages of ``hatrade replicate``) holds:

``summary.json``
    ``kind`` (``"counterfactual"``, or ``"batch-run"`` in a batch); ``hatrade_version``;
    ``created``; the writer's header (e.g. ``name``, ``label``, ``source``); the
    counterfactual's summary (:meth:`hatrade.analysis.counterfactual.Counterfactual.summary`:
    ``scenario``, ``financial``, ``beta``, ``R``, ``wages``, ``R_over_w_change_percent``,
    ``home_share``, ``net_foreign_assets``, ``convergence``); ``by_country`` (the welfare
    summary of each reported country).
``welfare.csv``
    One row per household state of each reported country
    (:func:`hatrade.welfare.summary.country_welfare`'s table; only the header ``country`` when
    no country is reported).
``changes.csv``
    By-country changes (:meth:`~hatrade.analysis.counterfactual.Counterfactual.changes`).
``trade.csv``
    Trade shares old and new by pair
    (:meth:`~hatrade.analysis.counterfactual.Counterfactual.trade_share_changes`).
figures (``figures=True``)
    ``gains_by_quintile_<C>.png``, ``gains_by_income_<C>.png``, ``gains_heatmap_<C>.png``,
    ``gains_by_assets_<C>.png`` for each reported country.

A solve folder is built in a temporary folder next to the destination, which is then
moved into place (:meth:`hatrade.io.folders.OutputFolder.replace`): a reader never sees a
half-written folder, and a failure leaves nothing behind. The folder policy (what may
already be there) is :mod:`hatrade.io.folders`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.io.atomic import jsonable, write_json, write_text
from hatrade.io.folders import OutputFolder, prepare_output

__all__ = [
    "ResultsError",
    "SOLVE_FILES",
    "TRADE_COLUMNS",
    "trade_table_with_data",
    "trade_fit",
    "check_writers",
    "save_solve",
    "COUNTERFACTUAL_FILES",
    "counterfactual_summary",
    "save_counterfactual",
    "load_summary",
    "load_trade",
    "shares_matrix",
    "solve_summary",
]

log = logging.getLogger(__name__)

#: The files of a solve folder.
SOLVE_FILES: tuple[str, ...] = ("summary.json", "trade.csv", "households.nc", "trade_fit.png")

#: Columns of ``trade.csv``.
TRADE_COLUMNS: tuple[str, ...] = (
    "importer",
    "exporter",
    "share",
    "log_normalized_model",
    "log_normalized_data",
)

_KIND = "solve"


class ResultsError(ValueError):
    """A results file cannot be written (a writer is missing, bad data) or read."""


# ----------------------------------------------------------------------------- tables


def _data_table(data_fit) -> pd.DataFrame | None:
    if data_fit is None or data_fit is False:
        return None
    if isinstance(data_fit, str):
        if data_fit != "ek":
            raise ResultsError(
                f"data_fit = {data_fit!r} is not allowed: use 'ek' (the shipped "
                "Eaton-Kortum data), None, or a DataFrame with columns importer, "
                "exporter, log_trade."
            )
        from hatrade.data import load_trade_data

        return load_trade_data()
    if isinstance(data_fit, pd.DataFrame):
        missing = [c for c in ("importer", "exporter", "log_trade") if c not in data_fit.columns]
        if missing:
            raise ResultsError(
                f"data table lacks column(s) {missing}; required: importer, exporter, log_trade."
            )
        return data_fit
    raise ResultsError(
        f"data_fit must be 'ek', None or a DataFrame, got {type(data_fit).__name__}."
    )


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
            for i, j in zip(table["importer"], table["exporter"])
        ]
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


# ----------------------------------------------------------------------------- checks


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
        raise ResultsError(
            f"writing households.nc (NetCDF4) needs {' and '.join(missing)}; "
            f"install with: pip install {' '.join(missing)}"
        )


# ----------------------------------------------------------------------------- solve folder


def solve_summary(eq, name: str, fit: dict | None, parameters: dict | None = None) -> dict:
    """The content of ``summary.json`` (see the module docstring)."""
    from hatrade import __version__

    s = eq.summary()
    parameters = dict(parameters) if parameters else {}
    parameters.setdefault("household", eq.household.to_dict())
    parameters.setdefault("world", eq.world.to_dict())
    if "calibration" not in parameters and eq.world.meta.get("params") is not None:
        parameters["calibration"] = {
            "name": eq.world.meta.get("calibration"),
            "vector": list(eq.world.meta["params"]),
            "correct_germany": eq.world.meta.get("correct_germany"),
        }
    return jsonable(
        {
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
            "convergence": {
                k: s[k]
                for k in (
                    "converged",
                    "newton_iterations",
                    "max_excess_demand",
                    "household_solves",
                    "jacobians",
                    "seconds",
                )
            },
            "parameters": parameters,
        }
    )


def save_solve(eq, out_dir, name: str, data_fit="ek", parameters: dict | None = None) -> dict:
    """Write a solve folder (``summary.json``, ``trade.csv``, ``households.nc``,
    ``trade_fit.png``) atomically.

    Parameters
    ----------
    eq : hatrade.Equilibrium
    out_dir : path-like or OutputFolder
        Destination folder: new, empty, or a previous solve folder, which is replaced
        (the policy of :mod:`hatrade.io.folders`, kind ``"solve"``).
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
    OutputFolderError
        ``out_dir`` cannot hold a solve folder; nothing is written then.
    ResultsError
        The NetCDF4 writer is missing (:func:`check_writers`).
    """
    from hatrade.plots.trade_fit import save_trade_fit

    check_writers()
    folder = out_dir if isinstance(out_dir, OutputFolder) else prepare_output(out_dir, _KIND)
    table = trade_table_with_data(eq, data_fit)
    fit = trade_fit(table)
    summary = solve_summary(eq, name, fit, parameters)
    ds = eq.to_dataset()
    ds.attrs.update(
        {"name": name, "hatrade_version": summary["hatrade_version"], "created": summary["created"]}
    )
    with folder.replace() as tmp:
        write_json(tmp / "summary.json", summary, indent=2)
        table.to_csv(tmp / "trade.csv", index=False, na_rep="", float_format="%.17g")
        ds.to_netcdf(tmp / "households.nc", engine="h5netcdf")
        save_trade_fit(table, tmp / "trade_fit.png", fit=fit, title=f"Bilateral trade: {name}")
    log.info("wrote %s (%s)", folder.path, ", ".join(SOLVE_FILES))
    return summary


# ----------------------------------------------------------------------------- counterfactual

#: The files of a counterfactual folder (figures come on top, see :func:`save_counterfactual`).
COUNTERFACTUAL_FILES: tuple[str, ...] = ("summary.json", "welfare.csv", "changes.csv", "trade.csv")


def counterfactual_summary(cf, by_country: dict, **header) -> dict:
    """The content of a counterfactual folder's ``summary.json`` (module docstring).

    Parameters
    ----------
    cf : hatrade.analysis.counterfactual.Counterfactual
    by_country : dict
        Welfare summary by reported country (``CountryWelfare.summary``).
    **header
        Entries placed before the counterfactual's summary, e.g. ``name``, ``label``,
        ``source``; ``kind`` defaults to ``"counterfactual"``.
    """
    from hatrade import __version__

    head = {
        "kind": "counterfactual",
        "hatrade_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **header,
    }
    return {**head, **cf.summary(), "by_country": by_country}


def save_counterfactual(
    folder,
    cf,
    welfare_table: pd.DataFrame | None,
    summary: dict,
    *,
    figures: bool = False,
    compare: dict | None = None,
    label: str = "HA model",
) -> list[str]:
    """Write a counterfactual folder's files into ``folder``, each atomically.

    Parameters
    ----------
    folder : path-like
        Where to write (created when needed); typically the temporary folder of
        :meth:`hatrade.io.folders.OutputFolder.replace` or of
        :func:`hatrade.io.atomic.atomic_dir`, so that the whole folder appears at once.
    cf : hatrade.analysis.counterfactual.Counterfactual
    welfare_table : pandas.DataFrame or None
        The welfare rows of the reported countries (None: none reported).
    summary : dict
        The content of ``summary.json`` (:func:`counterfactual_summary`).
    figures : bool
        Also draw the welfare figures (:func:`hatrade.plots.welfare.save_welfare_figures`).
    compare, label : the other folder's summary drawn side by side, and this model's label
        (figures only).

    Returns
    -------
    list of str
        The names of the files written: :data:`COUNTERFACTUAL_FILES`, then the figures.
    """
    folder = Path(folder)
    table = welfare_table if welfare_table is not None else pd.DataFrame(columns=["country"])
    write_json(folder / "summary.json", summary, indent=2)
    write_text(folder / "welfare.csv", table.to_csv(index=False, float_format="%.17g"))
    write_text(
        folder / "changes.csv", cf.changes().reset_index().to_csv(index=False, float_format="%.17g")
    )
    write_text(
        folder / "trade.csv", cf.trade_share_changes().to_csv(index=False, float_format="%.17g")
    )
    names = list(COUNTERFACTUAL_FILES)
    if figures:
        from hatrade.plots.welfare import save_welfare_figures

        paths = save_welfare_figures(folder, summary, table, compare=compare, label=label)
        names += [Path(p).name for p in paths]
    return names


# ----------------------------------------------------------------------------- reading


def _solve_file(path, filename: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / filename
    if not p.is_file():
        raise ResultsError(
            f"{p} does not exist; expected a solve folder written by "
            f"'hatrade solve' (with {', '.join(SOLVE_FILES)})."
        )
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
        raise ResultsError(
            f'{p} is not a solve summary written by \'hatrade solve\' (no "kind": "solve").'
        )
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
        df = pd.read_csv(
            p,
            dtype={"importer": str, "exporter": str},
            keep_default_na=False,
            na_values={"share": [""], "log_normalized_model": [""], "log_normalized_data": [""]},
        )
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
        raise ResultsError(
            f"{p}: expected one row per ordered pair of the countries "
            f"{countries} ({len(countries) ** 2} rows, diagonal included), got "
            f"{len(df)} rows."
        )
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
        raise ResultsError(
            f"trade table has no rows for country code(s) {missing}; it has {list(piv.index)}."
        )
    return piv.loc[countries, countries].to_numpy(float), countries
