r"""Loaders for the data shipped with :mod:`hatrade`.

The data are Eaton and Kortum's (2002) 19 OECD countries in 1990, as prepared by the
model's author (see ``PROVENANCE.md`` in this folder), plus the published calibration of
Waugh (2023) in ``calibration/``.

Country order (index 1..19 in every file) is :data:`COUNTRIES`. Trade data use the
convention that :math:`i` is the *importer* and :math:`j` the *exporter*; the dependent
variable of the gravity regression is

.. math:: y_{ij} = \log(X_{ij} / X_{ii}), \qquad i \neq j,

the importer's spending on goods from :math:`j` relative to its spending on itself.

Calibration vectors (46 numbers, the published layout) are
:math:`(\log A_1, \dots, \log A_{18}, \theta^m_1, \dots, \theta^m_{18}, \text{6 distance
bins}, \text{border}, \text{language}, \text{EC}, \text{EFTA})` with :math:`A_{19} = 1` and
:math:`\theta^m_{19} = -\sum_{i \le 18} \theta^m_i`; see :mod:`hatrade.core.tradecosts`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

__all__ = [
    "COUNTRIES",
    "COVARIATES",
    "BIN_COLUMNS",
    "N_PARAMETERS",
    "INITIAL_BETA",
    "CALIBRATIONS",
    "Calibration",
    "DataFileError",
    "ParameterFileError",
    "load_trade_data",
    "load_covariates",
    "load_labor",
    "load_calibration",
    "load_initial_prices",
    "read_parameter_file",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: ISO3 codes of the 19 countries, in the order used by every data file (index 1..19).
COUNTRIES: tuple[str, ...] = (
    "AUS", "AUT", "BEL", "CAN", "DNK", "FIN", "FRA", "DEU", "GRC", "ITA",
    "JPN", "NLD", "NZL", "NOR", "PRT", "ESP", "SWE", "GBR", "USA",
)  # fmt: skip

#: The six distance-bin dummies: [0,375), [375,750), [750,1500), [1500,3000),
#: [3000,6000), [6000,max) miles.
BIN_COLUMNS: tuple[str, ...] = ("bin375", "bin750", "bin1500", "bin3000", "bin6000", "binmax")

#: Covariates of the gravity regression (besides the fixed effects), in regression order.
COVARIATES: tuple[str, ...] = BIN_COLUMNS + ("border", "language", "ec", "efta")

#: Length of a calibration vector for the 19-country world: 2 * (19 - 1) + 10.
N_PARAMETERS: int = 46

#: Discount factor the author's calibration routine started from.
INITIAL_BETA: float = 0.93

#: Published calibrations: name -> (file stem, gamma, sigma_eps, psi_slope).
CALIBRATIONS: dict[str, tuple[str, float, float, float]] = {
    "baseline": ("baseline", 1.45, 0.33, 0.725),
    "log": ("log", 1.0, 0.2369, 0.0),
}

# Column renaming from the author's files to the package's names.
_RENAME = {
    "trade": "log_trade",
    "distance": "distance_miles",
    "sharedlanguage": "language",
    "europeancom": "ec",
}
_DATA_COLUMNS = ("trade", "distance", "border") + BIN_COLUMNS + ("importer", "exporter")
_LANGUAGE_COLUMNS = ("sharedlanguage", "europeancom", "efta")
_CNTRYFIX_COLUMNS = (
    ("distance", "border") + BIN_COLUMNS + ("importer", "exporter") + _LANGUAGE_COLUMNS
)
_N_PAIRS = len(COUNTRIES) * (len(COUNTRIES) - 1)


class DataFileError(ValueError):
    """A shipped or user-supplied data file is missing, malformed or inconsistent."""


class ParameterFileError(DataFileError):
    """A parameter (or price) file does not have the published layout."""


# --------------------------------------------------------------------------------------
# locating files
# --------------------------------------------------------------------------------------


def _data_path(*parts: str) -> Path:
    """Path of a shipped data file (``hatrade/data/<parts>``)."""
    node = resources.files(__name__)
    for part in parts:
        node = node / part
    # The package is installed as plain files (no zip), so this is a real path.
    return Path(str(node))


# --------------------------------------------------------------------------------------
# trade data
# --------------------------------------------------------------------------------------


def _read_csv(path: PathLike, required: tuple[str, ...], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{what} file {path} does not exist.")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises several types
        raise DataFileError(f"could not read {what} file {path}: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataFileError(
            f"{what} file {path} lacks column(s) {missing}; expected columns {list(required)}, "
            f"found {list(df.columns)}."
        )
    return df


def _codes(index: pd.Series, path: Path, column: str) -> pd.Series:
    """Map 1-based country indices to ISO3 codes, with a clear error for bad indices."""
    values = pd.to_numeric(index, errors="coerce")
    bad = ~values.isin(range(1, len(COUNTRIES) + 1))
    if bad.any():
        rows = list(np.flatnonzero(bad.to_numpy())[:10] + 2)  # +2: header line, 1-based
        raise DataFileError(
            f"{path}: column {column!r} has values outside 1..{len(COUNTRIES)} (file lines {rows})."
        )
    return values.astype(int).map(lambda k: COUNTRIES[k - 1])


def _join_trade_files(
    data_path: PathLike, language_path: PathLike, cntryfix_path: PathLike
) -> pd.DataFrame:
    """Join ``ek-data.csv`` (off-diagonal rows) with ``ek-language.csv`` and check the result.

    ``ek-language.csv`` has no importer/exporter columns: its rows are the off-diagonal
    rows of ``ek-data.csv`` in the same order. The join is verified against
    ``ek-cntryfix.csv``, which holds all covariates together with importer/exporter.

    Parameters
    ----------
    data_path, language_path, cntryfix_path : path-like
        The three files.

    Returns
    -------
    pandas.DataFrame
        342 rows: ``importer``, ``exporter``, ``log_trade``, ``distance_miles`` and
        :data:`COVARIATES`.

    Raises
    ------
    DataFileError
        Missing columns, wrong row counts, or rows of the files that do not describe the
        same country pairs / covariates.
    """
    data_path, language_path, cntryfix_path = map(Path, (data_path, language_path, cntryfix_path))
    data = _read_csv(data_path, _DATA_COLUMNS, "trade data")
    lang = _read_csv(language_path, _LANGUAGE_COLUMNS, "language/bloc")
    fix = _read_csv(cntryfix_path, _CNTRYFIX_COLUMNS, "covariate (cntryfix)")

    n_all = len(COUNTRIES) ** 2
    if len(data) != n_all:
        raise DataFileError(
            f"{data_path} has {len(data)} data rows; expected {n_all} (19 x 19 importer-exporter pairs)."
        )
    data = data.assign(
        importer=_codes(data["importer"], data_path, "importer"),
        exporter=_codes(data["exporter"], data_path, "exporter"),
    )
    off = data[data["importer"] != data["exporter"]].reset_index(drop=True)
    if len(off) != _N_PAIRS:
        raise DataFileError(f"{data_path} has {len(off)} off-diagonal rows; expected {_N_PAIRS}.")
    for path, df in ((language_path, lang), (cntryfix_path, fix)):
        if len(df) != _N_PAIRS:
            raise DataFileError(
                f"{path} has {len(df)} data rows; expected {_N_PAIRS} (the off-diagonal rows "
                f"of {data_path.name}, in the same order)."
            )
    fix = fix.assign(
        importer=_codes(fix["importer"], cntryfix_path, "importer"),
        exporter=_codes(fix["exporter"], cntryfix_path, "exporter"),
    )

    pairs = list(zip(off["importer"], off["exporter"]))
    if len(set(pairs)) != _N_PAIRS:
        raise DataFileError(f"{data_path} has duplicated importer-exporter pairs.")

    def _check_same(a, b, name_a: str, name_b: str) -> None:
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            bad = ~np.isclose(a.astype(float), b.astype(float), rtol=0.0, atol=1e-9)
        else:
            bad = a != b
        if bad.any():
            rows = np.flatnonzero(bad)
            examples = [
                f"row {r + 1} ({off['importer'][r]}->{off['exporter'][r]})" for r in rows[:5]
            ]
            raise DataFileError(
                f"files do not match: {name_a} differs from {name_b} in {bad.sum()} of "
                f"{_N_PAIRS} off-diagonal rows, e.g. {', '.join(examples)}. The files must list "
                f"the same pairs in the same order."
            )

    for col in ("importer", "exporter", "distance", "border") + BIN_COLUMNS:
        _check_same(
            off[col], fix[col], f"column {col!r} of {data_path.name}", f"{cntryfix_path.name}"
        )
    for col in _LANGUAGE_COLUMNS:
        _check_same(
            lang[col], fix[col], f"column {col!r} of {language_path.name}", f"{cntryfix_path.name}"
        )

    out = off[["importer", "exporter", "trade", "distance"]].copy()
    for col in BIN_COLUMNS + ("border",):
        out[col] = off[col].astype(int)
    for col in _LANGUAGE_COLUMNS:
        out[col] = lang[col].astype(int).to_numpy()
    out = out.rename(columns=_RENAME)
    out["log_trade"] = out["log_trade"].astype(float)
    out["distance_miles"] = out["distance_miles"].astype(float)
    if not np.isfinite(out["log_trade"]).all():
        bad = out.loc[~np.isfinite(out["log_trade"]), ["importer", "exporter"]]
        raise DataFileError(f"{data_path}: non-finite trade for pairs {bad.values.tolist()[:10]}.")
    bins = out[list(BIN_COLUMNS)].to_numpy()
    if not ((bins == 0) | (bins == 1)).all() or not (bins.sum(axis=1) == 1).all():
        raise DataFileError(f"{data_path}: every pair must be in exactly one distance bin.")
    return out[["importer", "exporter", "log_trade", "distance_miles", *COVARIATES]]


@lru_cache(maxsize=1)
def _trade_data_cached() -> pd.DataFrame:
    df = _join_trade_files(
        _data_path("ek-data.csv"), _data_path("ek-language.csv"), _data_path("ek-cntryfix.csv")
    )
    logger.debug("loaded %d off-diagonal trade pairs", len(df))
    return df


def load_trade_data() -> pd.DataFrame:
    r"""Eaton-Kortum trade data for the 342 ordered pairs :math:`i \neq j`.

    Returns
    -------
    pandas.DataFrame
        One row per ordered pair, importer-major in :data:`COUNTRIES` order, with columns

        - ``importer``, ``exporter``: ISO3 codes (:math:`i`, :math:`j`);
        - ``log_trade``: :math:`y_{ij} = \log(X_{ij}/X_{ii})`;
        - ``distance_miles``: distance between :math:`i` and :math:`j`;
        - ``bin375`` ... ``binmax``: distance-bin dummies (exactly one is 1);
        - ``border``, ``language``, ``ec``, ``efta``: shared border, shared language, both in
          the European Community, both in EFTA.

    Raises
    ------
    DataFileError
        If the shipped files are inconsistent (``ek-data.csv`` and ``ek-language.csv`` are
        joined by row order and checked against ``ek-cntryfix.csv``).
    """
    return _trade_data_cached().copy()


def load_covariates() -> pd.DataFrame:
    """Covariates of the 342 ordered pairs, from ``ek-cntryfix.csv``.

    This is what model-generated trade shares are joined with before running the gravity
    regression (see :func:`hatrade.analysis.gravity.model_trade_table`).

    Returns
    -------
    pandas.DataFrame
        Columns ``importer``, ``exporter``, ``distance_miles`` and :data:`COVARIATES`, in the
        row order of :func:`load_trade_data`.
    """
    return _covariates_cached().copy()


@lru_cache(maxsize=1)
def _covariates_cached() -> pd.DataFrame:
    path = _data_path("ek-cntryfix.csv")
    fix = _read_csv(path, _CNTRYFIX_COLUMNS, "covariate (cntryfix)")
    if len(fix) != _N_PAIRS:
        raise DataFileError(f"{path} has {len(fix)} data rows; expected {_N_PAIRS}.")
    out = pd.DataFrame(
        {
            "importer": _codes(fix["importer"], path, "importer"),
            "exporter": _codes(fix["exporter"], path, "exporter"),
            "distance_miles": fix["distance"].astype(float),
        }
    )
    for col in BIN_COLUMNS + ("border",) + _LANGUAGE_COLUMNS:
        out[_RENAME.get(col, col)] = fix[col].astype(int)
    return out[["importer", "exporter", "distance_miles", *COVARIATES]]


# --------------------------------------------------------------------------------------
# labor
# --------------------------------------------------------------------------------------


def load_labor(correct_germany: bool = False) -> pd.Series:
    r"""Labor force :math:`L_i` relative to the US (``ek-labor.csv``).

    Parameters
    ----------
    correct_germany : bool, default False
        The file gives Germany :math:`L = 0.0225`, almost surely a slip for 0.225 (Germany's
        labor force is about a fifth of the US's, cf. France 0.181, UK 0.186). The published
        calibration was made with 0.0225, so the default keeps it in order to reproduce the
        published numbers; ``True`` uses 0.225 instead.

    Returns
    -------
    pandas.Series
        19 values indexed by ISO3 code (:data:`COUNTRIES` order), named ``labor``.
    """
    path = _data_path("ek-labor.csv")
    df = _read_csv(path, ("L",), "labor")
    if len(df) != len(COUNTRIES):
        raise DataFileError(f"{path} has {len(df)} rows; expected {len(COUNTRIES)}.")
    labor = pd.Series(
        df["L"].astype(float).to_numpy(), index=pd.Index(COUNTRIES, name="country"), name="labor"
    )
    if correct_germany:
        logger.info("using corrected German labor force 0.225 (file: %.4f)", labor["DEU"])
        labor["DEU"] = 0.225
    return labor


# --------------------------------------------------------------------------------------
# parameter / price files
# --------------------------------------------------------------------------------------


def _read_number_file(path: PathLike, expected: int, what: str) -> np.ndarray:
    """Read a file with header ``guess`` and one number per line."""
    path = Path(path)
    if not path.is_file():
        raise ParameterFileError(f"{what} file {path} does not exist.")
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ParameterFileError(
            f"{what} file {path} is empty; expected header 'guess' and "
            f"{expected} numbers, one per line."
        )
    header = lines[0].strip()
    if header != "guess":
        raise ParameterFileError(
            f"{what} file {path}: line 1 is {header!r}; expected the header 'guess' followed by "
            f"{expected} numbers, one per line."
        )
    body = lines[1:]
    if len(body) != expected:
        raise ParameterFileError(
            f"{what} file {path} has {len(body)} numbers; expected {expected} "
            f"(header 'guess', then one number per line)."
        )
    values = np.empty(expected)
    for k, line in enumerate(body):
        text = line.strip()
        try:
            x = float(text)
        except ValueError:
            raise ParameterFileError(
                f"{what} file {path}: line {k + 2} (entry {k + 1} of {expected}) is {text!r}, "
                f"not a number."
            ) from None
        if not math.isfinite(x):
            raise ParameterFileError(
                f"{what} file {path}: line {k + 2} (entry {k + 1} of {expected}) is {text!r}; "
                f"entries must be finite."
            )
        values[k] = x
    return values


def read_parameter_file(path: PathLike) -> np.ndarray:
    r"""Read a calibration vector in the published layout.

    The file has the header ``guess`` and then 46 numbers, one per line:
    :math:`\log A_{1..18}`, :math:`\theta^m_{1..18}`, six distance-bin parameters, border,
    language, EC, EFTA.

    Parameters
    ----------
    path : path-like
        File to read.

    Returns
    -------
    numpy.ndarray
        The 46 numbers.

    Raises
    ------
    ParameterFileError
        Missing file or header, a count other than 46, or a non-numeric or non-finite entry
        (the message names the file and the line).
    """
    return _read_number_file(path, N_PARAMETERS, "parameter")


# --------------------------------------------------------------------------------------
# calibrations and prices
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Calibration:
    r"""A published calibration and the equilibrium prices that go with it.

    Attributes
    ----------
    name : str
        ``"baseline"`` or ``"log"``.
    params : numpy.ndarray
        The 46-number calibration vector (read-only), layout as in
        :func:`read_parameter_file`.
    wages : pandas.Series
        19 equilibrium wages by ISO3 code; the file gives :math:`w_1..w_{18}` and
        :math:`w_{19} = 19 - \sum_{i \le 18} w_i` (mean-one normalization).
    beta : float
        Discount factor clearing the world asset market at :math:`R = 1.01`.
    gamma, sigma_eps, psi_slope : float
        Household parameters the calibration was made for.
    """

    name: str
    params: np.ndarray
    wages: pd.Series
    beta: float
    gamma: float
    sigma_eps: float
    psi_slope: float


def load_calibration(name: str = "baseline") -> Calibration:
    r"""Load a published calibration.

    Parameters
    ----------
    name : {"baseline", "log"}
        ``"baseline"``: :math:`\gamma = 1.45, \sigma_\epsilon = 0.33, \psi_{slope} = 0.725`;
        ``"log"``: :math:`\gamma = 1, \sigma_\epsilon = 0.2369, \psi_{slope} = 0`.

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError
        For an unknown name (the message lists the allowed ones).
    """
    if name not in CALIBRATIONS:
        raise ValueError(
            f"unknown calibration {name!r}; allowed values: {', '.join(map(repr, CALIBRATIONS))}."
        )
    stem, gamma, sigma_eps, psi_slope = CALIBRATIONS[name]
    params = read_parameter_file(_data_path("calibration", f"{stem}-parameters.csv"))
    params.setflags(write=False)
    prices = _read_number_file(
        _data_path("calibration", f"{stem}-prices.csv"), len(COUNTRIES), "price"
    )
    w18, beta = prices[:-1], float(prices[-1])
    wages = pd.Series(
        np.append(w18, len(COUNTRIES) - w18.sum()),
        index=pd.Index(COUNTRIES, name="country"),
        name="wage",
    )
    if wages.iloc[-1] <= 0 or not 0 < beta < 1:
        raise DataFileError(
            f"{stem}-prices.csv gives implausible prices (w_19 = {wages.iloc[-1]}, beta = {beta})."
        )
    return Calibration(
        name=name,
        params=params,
        wages=wages,
        beta=beta,
        gamma=gamma,
        sigma_eps=sigma_eps,
        psi_slope=psi_slope,
    )


def load_initial_prices() -> pd.Series:
    r"""Starting wages of the author's calibration routine, rescaled to mean one.

    ``initial-prices.csv`` holds 18 wages and then 1.0 (the last country's wage before
    rescaling); the 19 numbers are divided by their mean, :math:`w \leftarrow w /
    \bar w`. The starting discount factor is :data:`INITIAL_BETA` (0.93).

    Returns
    -------
    pandas.Series
        19 wages by ISO3 code with mean 1, named ``wage``.
    """
    w = _read_number_file(
        _data_path("calibration", "initial-prices.csv"), len(COUNTRIES), "initial price"
    )
    return pd.Series(w / w.mean(), index=pd.Index(COUNTRIES, name="country"), name="wage")
