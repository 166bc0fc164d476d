r"""The gravity regression of Eaton and Kortum (2002), docs/model.md section 4.

For importer :math:`i \neq j` (exporter),

.. math::

    y_{ij} = \log(X_{ij}/X_{ii})
           = S_j - S_i + \theta^m_i + \delta_{k(ij)} + b\,\mathrm{border}_{ij}
             + l\,\mathrm{lang}_{ij} + e\,\mathrm{EC}_{ij} + f\,\mathrm{EFTA}_{ij}
             + \varepsilon_{ij},

i.e. importer fixed effect :math:`\theta^m_i - S_i`, exporter fixed effect :math:`S_j`, six
distance-bin dummies :math:`\delta_k` and four pair dummies.

Identification
--------------
Every row has exactly one importer dummy, one exporter dummy and one distance-bin dummy,
so the three groups share a constant: with all of them the design has rank deficiency 2.
We estimate the full-rank regression with importer and exporter dummies for the first
:math:`M-1` countries only (:math:`a_M = m_M = 0`), all six bins, no global constant:

.. math:: y_{ij} = a_i + m_j + \tilde\delta_{k(ij)} + \dots

and map the estimates to the normalized objects

.. math::

    S_j = m_j - \bar m, \qquad
    \theta^m_i = (a_i - \bar a) + (m_i - \bar m), \qquad
    \delta_k = \tilde\delta_k + \bar a + \bar m,

with means over all :math:`M` countries. This is the Eaton-Kortum normalization: the
exporter effects have mean zero, :math:`\theta^m_i` = importer effect + :math:`S_i`
demeaned, and its mean is added to each distance-bin coefficient. One checks
:math:`S_j - S_i + \theta^m_i + \delta_k = a_i + m_j + \tilde\delta_k`, so the fitted values
are unchanged. Because the fitted values of a least-squares problem are unique and the
normalized objects are a one-to-one function of them (given :math:`\bar S = 0` and
:math:`\sum_i \theta^m_i = 0`), they do not depend on which dummies were dropped.

Moments
-------
The 46-vector (for :math:`M = 19`) is :math:`(S_1..S_{18}, \theta^m_1..\theta^m_{18},
\delta_1..\delta_6, b, l, e, f)`: the layout of the calibration vector with :math:`S` in
place of :math:`\log A`. It is a linear map :math:`T` of the raw coefficients, so standard
errors of normalized objects are :math:`\sqrt{\mathrm{diag}(T V T')}`, with :math:`V` the
(classical, homoskedastic) OLS covariance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

from hatrade.data import BIN_COLUMNS, COUNTRIES, COVARIATES, load_covariates

__all__ = [
    "COEFFICIENT_NAMES",
    "BARRIER_LABELS",
    "TradeTableError",
    "GravityResult",
    "validate_trade_table",
    "gravity_regression",
    "table1",
    "model_trade_table",
]

logger = logging.getLogger(__name__)

#: Names of the 10 identified coefficients, in moment-vector order.
COEFFICIENT_NAMES: tuple[str, ...] = (
    "dist_[0,375)",
    "dist_[375,750)",
    "dist_[750,1500)",
    "dist_[1500,3000)",
    "dist_[3000,6000)",
    "dist_[6000,max)",
    "border",
    "language",
    "ec",
    "efta",
)

#: Table 1 labels of the coefficients. ``ec`` is the ``europeancom`` dummy (90 ordered pairs
#: in the data, coefficient about 0.04), ``efta`` the EFTA dummy (12 pairs, about 0.54); the
#: slides swap the two bloc labels.
BARRIER_LABELS: dict[str, str] = {
    "dist_[0,375)": "Distance [0,375)",
    "dist_[375,750)": "Distance [375,750)",
    "dist_[750,1500)": "Distance [750,1500)",
    "dist_[1500,3000)": "Distance [1500,3000)",
    "dist_[3000,6000)": "Distance [3000,6000)",
    "dist_[6000,max)": "Distance [6000,max)",
    "border": "Shared border",
    "language": "Shared language",
    "ec": "European Community",
    "efta": "EFTA",
}

_ID_COLUMNS = ("importer", "exporter")
_ALLOWED_EXTRA = ("distance_miles",)
_MAX_LISTED = 10


class TradeTableError(ValueError):
    """A trade table cannot be used in the gravity regression."""


def _listing(items: list) -> str:
    """Short text listing of pairs (``AUS->AUT``) or other items, at most 10 shown."""
    shown = ", ".join(
        f"{x[0]}->{x[1]}" if isinstance(x, tuple) and len(x) == 2 else str(x)
        for x in items[:_MAX_LISTED]
    )
    more = len(items) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def validate_trade_table(df: pd.DataFrame, countries: Sequence[str] | None = None) -> None:
    r"""Check a trade table before the gravity regression.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``importer``, ``exporter``, ``log_trade`` and all of
        :data:`~hatrade.data.COVARIATES`; optionally ``distance_miles`` (ignored). One row
        per ordered pair :math:`i \neq j`.
    countries : sequence of str, optional
        The countries the table must cover; default :data:`~hatrade.data.COUNTRIES`.

    Raises
    ------
    TradeTableError
        Missing required columns; unknown columns (a covariate the regression does not
        know would be silently ignored, so it is rejected); unknown country codes; diagonal
        rows; duplicated or missing ordered pairs; non-finite ``log_trade``; covariates
        that are not 0/1 dummies, or a pair not in exactly one distance bin. The message
        names the offending columns or pairs.
    """
    if not isinstance(df, pd.DataFrame):
        raise TradeTableError(f"trade table must be a pandas DataFrame, got {type(df).__name__}.")
    countries = tuple(COUNTRIES if countries is None else countries)
    if len(set(countries)) != len(countries):
        raise TradeTableError(f"countries contain duplicates: {countries}.")
    if len(countries) < 3:
        raise TradeTableError(
            f"the gravity regression needs at least 3 countries, got {countries}."
        )

    _check_columns(df)
    pairs = _check_pairs(df, countries)
    _check_values(df, pairs)


def _check_columns(df: pd.DataFrame) -> None:
    """Required columns present, no unknown ones."""
    required = _ID_COLUMNS + ("log_trade",) + COVARIATES
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TradeTableError(f"trade table lacks column(s) {missing}; required: {list(required)}.")
    unknown = [c for c in df.columns if c not in required + _ALLOWED_EXTRA]
    if unknown:
        raise TradeTableError(
            f"trade table has unknown column(s) {unknown}; allowed covariates are "
            f"{list(COVARIATES)} (plus {list(_ID_COLUMNS + ('log_trade',) + _ALLOWED_EXTRA)})."
        )


def _check_pairs(df: pd.DataFrame, countries: tuple[str, ...]) -> list[tuple]:
    """Known codes, every ordered pair i != j exactly once; returns the rows' pairs."""
    known = set(countries)
    bad_codes = sorted(
        {str(c) for c in pd.concat([df["importer"], df["exporter"]]) if c not in known}
    )
    if bad_codes:
        raise TradeTableError(
            f"trade table has unknown country code(s) {bad_codes}; expected codes among "
            f"{list(countries)}."
        )

    pairs = list(zip(df["importer"], df["exporter"]))
    diagonal = [p for p in pairs if p[0] == p[1]]
    if diagonal:
        raise TradeTableError(
            f"trade table has diagonal (importer == exporter) rows: {_listing(diagonal)}; only "
            f"pairs i != j enter the regression."
        )
    counts = pd.Series(pairs, dtype=object).value_counts()
    dups = sorted(counts[counts > 1].index.tolist())
    if dups:
        raise TradeTableError(f"trade table has duplicated pair(s): {_listing(dups)}.")
    present = set(pairs)
    absent = [(a, b) for a in countries for b in countries if a != b and (a, b) not in present]
    if absent:
        raise TradeTableError(
            f"trade table lacks {len(absent)} ordered pair(s): {_listing(absent)}; every pair "
            f"i != j of the {len(countries)} countries must be present."
        )
    return pairs


def _check_values(df: pd.DataFrame, pairs: list[tuple]) -> None:
    """Finite log_trade, 0/1 covariates, exactly one distance bin per pair."""
    y = pd.to_numeric(df["log_trade"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(y)
    if bad.any():
        rows = [pairs[k] for k in np.flatnonzero(bad)]
        raise TradeTableError(
            f"log_trade is missing or non-finite for pair(s): {_listing(rows)} "
            f"(zero trade has no log)."
        )

    for col in COVARIATES:
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~((x == 0) | (x == 1))
        if bad.any():
            rows = [pairs[k] for k in np.flatnonzero(bad)]
            raise TradeTableError(
                f"covariate {col!r} must be a 0/1 dummy; bad values for pair(s) {_listing(rows)}."
            )
    nbins = df[list(BIN_COLUMNS)].to_numpy(dtype=float).sum(axis=1)
    bad = nbins != 1
    if bad.any():
        rows = [pairs[k] for k in np.flatnonzero(bad)]
        raise TradeTableError(
            f"each pair must be in exactly one distance bin {list(BIN_COLUMNS)}; not so for "
            f"pair(s) {_listing(rows)}."
        )


@dataclass
class GravityResult:
    r"""Normalized estimates of the gravity regression.

    Attributes
    ----------
    S : pandas.Series
        Exporter effects :math:`S_j` by country, mean zero.
    theta_m : pandas.Series
        Importer-specific barriers :math:`\theta^m_i` by country, summing to zero.
    coefficients : pandas.Series
        The 10 coefficients indexed by :data:`COEFFICIENT_NAMES` (distance bins after the
        normalization).
    moments : numpy.ndarray
        :math:`(S_1..S_{M-1}, \theta^m_1..\theta^m_{M-1}, \text{10 coefficients})`, 46 numbers
        for :math:`M = 19`.
    residuals, fitted : pandas.Series
        Aligned with the input table's index.
    r2 : float
        :math:`1 - \sum e^2 / \sum (y - \bar y)^2`.
    method : str
        ``"fast"`` or ``"statsmodels"``.
    countries : tuple of str
    nobs : int
    standard_errors : pandas.Series or None
        ``"statsmodels"`` only: classical OLS standard errors of the 10 coefficients. For the
        distance bins these are standard errors of the *normalized* coefficient
        :math:`\delta_k = \tilde\delta_k + \bar a + \bar m`, a linear combination
        :math:`c'\beta` of the raw estimates: :math:`\sqrt{c' V c}`. They do not depend on
        which dummies were dropped.
    moment_covariance : numpy.ndarray or None
        ``"statsmodels"`` only: :math:`T V T'`, covariance of ``moments``.
    """

    S: pd.Series
    theta_m: pd.Series
    coefficients: pd.Series
    moments: np.ndarray
    residuals: pd.Series
    fitted: pd.Series
    r2: float
    method: str
    countries: tuple[str, ...]
    nobs: int
    standard_errors: pd.Series | None = None
    moment_covariance: np.ndarray | None = field(default=None, repr=False)
    raw_results: Any = field(default=None, repr=False)

    def summary(self) -> str:
        """Text summary: coefficients (with standard errors when available), S, theta_m."""
        lines = [
            f"Gravity regression ({self.method}), {self.nobs} pairs, "
            f"{len(self.countries)} countries, R^2 = {self.r2:.4f}",
            "",
            f"{'barrier':<22}{'coef':>10}"
            + (f"{'s.e.':>10}" if self.standard_errors is not None else ""),
        ]
        for name, value in self.coefficients.items():
            row = f"{BARRIER_LABELS[name]:<22}{value:>10.4f}"
            if self.standard_errors is not None:
                row += f"{self.standard_errors[name]:>10.4f}"
            lines.append(row)
        lines += ["", f"{'country':<10}{'S':>10}{'theta_m':>10}"]
        for c in self.countries:
            lines.append(f"{c:<10}{self.S[c]:>10.4f}{self.theta_m[c]:>10.4f}")
        lines.append("")
        lines.append(
            "Normalization: mean(S) = 0; theta_m = importer FE + S, demeaned, mean added to "
            "each distance bin."
        )
        if self.raw_results is not None:
            lines += [
                "",
                "Raw regression (a_M = m_M = 0, no constant):",
                str(self.raw_results.summary()),
            ]
        return "\n".join(lines)


def _design(df: pd.DataFrame, countries: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Full-rank design: importer/exporter dummies for countries 1..M-1, 6 bins, 4 dummies."""
    m = len(countries)
    pos = {c: k for k, c in enumerate(countries)}
    i = df["importer"].map(pos).to_numpy(dtype=int)
    j = df["exporter"].map(pos).to_numpy(dtype=int)
    n = len(df)
    imp = np.zeros((n, m))
    imp[np.arange(n), i] = 1.0
    exp_ = np.zeros((n, m))
    exp_[np.arange(n), j] = 1.0
    cov = df[list(COVARIATES)].to_numpy(dtype=float)
    x = np.hstack([imp[:, :-1], exp_[:, :-1], cov])
    names = (
        [f"imp_{c}" for c in countries[:-1]]
        + [f"exp_{c}" for c in countries[:-1]]
        + list(COEFFICIENT_NAMES)
    )
    return x, names


def _normalization_matrix(m: int) -> np.ndarray:
    r"""Matrix :math:`T` mapping raw coefficients to the moment vector.

    Raw: :math:`(a_1..a_{M-1}, m_1..m_{M-1}, \tilde\delta_{1..6}, b, l, e, f)`;
    moments: :math:`(S_1..S_{M-1}, \theta^m_1..\theta^m_{M-1}, \delta_{1..6}, b, l, e, f)`.
    """
    k = m - 1
    n = 2 * k + len(COEFFICIENT_NAMES)
    t = np.zeros((n, n))
    eye = np.eye(k)
    centre = eye - 1.0 / m  # x_i - (1/M) sum_{l<M} x_l, with x_M = 0
    a, mm = slice(0, k), slice(k, 2 * k)
    t[a, mm] = centre  # S
    t[mm, a] = centre  # theta_m: (a_i - abar) ...
    t[mm, mm] = centre  # ... + (m_i - mbar)
    for r in range(2 * k, 2 * k + 6):  # bins: + abar + mbar
        t[r, r] = 1.0
        t[r, : 2 * k] = 1.0 / m
    for r in range(2 * k + 6, n):
        t[r, r] = 1.0
    return t


def gravity_regression(
    df: pd.DataFrame,
    method: Literal["fast", "statsmodels"] = "fast",
    countries: Sequence[str] | None = None,
) -> GravityResult:
    r"""Run the gravity regression and apply the Eaton-Kortum normalization.

    .. math::

        y_{ij} = (\theta^m_i - S_i) + S_j + \delta_{k(ij)} + b\,\mathrm{border}_{ij}
                 + l\,\mathrm{lang}_{ij} + e\,\mathrm{EC}_{ij} + f\,\mathrm{EFTA}_{ij}
                 + \varepsilon_{ij},

    with :math:`\bar S = 0` and :math:`\sum_i \theta^m_i = 0` (see the module docstring for
    the identification argument).

    Parameters
    ----------
    df : pandas.DataFrame
        Trade table (see :func:`validate_trade_table`), e.g.
        :func:`hatrade.data.load_trade_data` or :func:`model_trade_table`.
    method : {"fast", "statsmodels"}
        ``"fast"``: :func:`numpy.linalg.lstsq` on the dense design; ``"statsmodels"``: OLS
        with standard errors and a regression summary.
    countries : sequence of str, optional
        Countries of the table; default :data:`~hatrade.data.COUNTRIES`. The order sets the
        order of ``S``, ``theta_m`` and the moments.

    Returns
    -------
    GravityResult

    Raises
    ------
    TradeTableError
        If the table is invalid or the design is rank deficient (e.g. a dummy that is zero
        for every pair of a subset of countries).
    ValueError
        For an unknown ``method``.
    """
    if method not in ("fast", "statsmodels"):
        raise ValueError(f"unknown method {method!r}; allowed values: 'fast', 'statsmodels'.")
    countries = tuple(COUNTRIES if countries is None else countries)
    validate_trade_table(df, countries)
    x, names = _design(df, countries)
    y = df["log_trade"].to_numpy(dtype=float)

    rank = np.linalg.matrix_rank(x)
    if rank < x.shape[1]:
        constant = [c for c in COVARIATES if df[c].nunique() == 1]
        raise TradeTableError(
            f"gravity design is rank deficient ({rank} < {x.shape[1]} columns)"
            + (f"; covariate(s) {constant} do not vary across pairs" if constant else "")
            + "."
        )

    raw_results = None
    if method == "fast":
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    else:
        import statsmodels.api as sm

        raw_results = sm.OLS(y, pd.DataFrame(x, columns=names, index=df.index)).fit()
        beta = raw_results.params.to_numpy()
    result = _normalized_result(df, countries, x, y, beta, method, raw_results)
    logger.debug("gravity regression (%s): %d pairs, R^2 = %.4f", method, len(df), result.r2)
    return result


def _normalized_result(df, countries, x, y, beta, method, raw_results) -> GravityResult:
    """The Eaton-Kortum normalization of the raw estimates ``beta`` (module docstring), fit
    statistics and, with ``raw_results`` (statsmodels), standard errors."""
    m = len(countries)
    cov_m = None
    se = None
    t = _normalization_matrix(m)
    moments = t @ beta
    if raw_results is not None:
        cov_m = t @ raw_results.cov_params().to_numpy() @ t.T
        se = pd.Series(
            np.sqrt(np.diag(cov_m))[2 * (m - 1) :],
            index=list(COEFFICIENT_NAMES),
            name="standard_error",
        )

    k = m - 1
    s = np.append(moments[:k], -moments[:k].sum())
    theta = np.append(moments[k : 2 * k], -moments[k : 2 * k].sum())
    fitted = x @ beta
    resid = y - fitted
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / sst if sst > 0 else float("nan")
    idx = pd.Index(countries, name="country")
    return GravityResult(
        S=pd.Series(s, index=idx, name="S"),
        theta_m=pd.Series(theta, index=idx, name="theta_m"),
        coefficients=pd.Series(moments[2 * k :], index=list(COEFFICIENT_NAMES), name="coefficient"),
        moments=moments,
        residuals=pd.Series(resid, index=df.index, name="residual"),
        fitted=pd.Series(fitted, index=df.index, name="fitted"),
        r2=r2,
        method=method,
        countries=countries,
        nobs=len(df),
        standard_errors=se,
        moment_covariance=cov_m,
        raw_results=raw_results,
    )


def table1(
    data_result: GravityResult,
    model_result: GravityResult | None = None,
    params=None,
) -> pd.DataFrame:
    r"""Table 1 of the paper: trade barriers in the data, the model, and the parameters.

    Parameters
    ----------
    data_result : GravityResult
        Regression on the data (the ``moment`` column).
    model_result : GravityResult, optional
        Regression on model-generated trade (the ``model_fit`` column).
    params : array_like, optional
        Calibration vector (46 numbers for 19 countries); its last 10 entries :math:`x` are
        reported as trade costs :math:`d = \exp(-x/4)` (the ``parameter`` column). These
        exclude the importer term :math:`\theta^m_i` and the floor at 1.

    Returns
    -------
    pandas.DataFrame
        Indexed by :data:`COEFFICIENT_NAMES`, columns ``barrier`` (labels as in
        :data:`BARRIER_LABELS`), ``moment`` and, when given, ``model_fit`` and ``parameter``.
    """
    from hatrade.core.tradecosts import TRADE_COST_SCALE

    out = pd.DataFrame(
        {
            "barrier": [BARRIER_LABELS[n] for n in COEFFICIENT_NAMES],
            "moment": data_result.coefficients.reindex(COEFFICIENT_NAMES).to_numpy(),
        },
        index=pd.Index(COEFFICIENT_NAMES, name="coefficient"),
    )
    if model_result is not None:
        out["model_fit"] = model_result.coefficients.reindex(COEFFICIENT_NAMES).to_numpy()
    if params is not None:
        vec = np.asarray(params, dtype=float).ravel()
        if vec.size < len(COEFFICIENT_NAMES) or (vec.size - len(COEFFICIENT_NAMES)) % 2:
            raise ValueError(
                f"params has {vec.size} entries; expected 2 (M - 1) + 10 (46 for 19 countries)."
            )
        out["parameter"] = np.exp(-vec[-len(COEFFICIENT_NAMES) :] / TRADE_COST_SCALE)
    return out


def model_trade_table(
    shares: np.ndarray,
    countries: Sequence[str] = COUNTRIES,
    covariates: pd.DataFrame | None = None,
) -> pd.DataFrame:
    r"""Trade table from model trade shares, ready for :func:`gravity_regression`.

    Parameters
    ----------
    shares : numpy.ndarray
        :math:`M \times M` trade shares :math:`s_{ij}` (importer :math:`i` in rows, the
        share of :math:`i`'s spending on goods from :math:`j`), positive.
    countries : sequence of str
        Row/column labels of ``shares``.
    covariates : pandas.DataFrame, optional
        Pair covariates (default :func:`hatrade.data.load_covariates`); rows for the
        ordered pairs of ``countries`` are used, in their order in this table.

    Returns
    -------
    pandas.DataFrame
        Columns ``importer``, ``exporter``, ``log_trade`` :math:`= \log(s_{ij}/s_{ii})`,
        then the covariate columns (``distance_miles`` if present and
        :data:`~hatrade.data.COVARIATES`), one row per pair :math:`i \neq j`, in the row
        order of the covariates (for the default, that of the data).

    Raises
    ------
    ValueError
        Wrong shape or non-positive / non-finite shares.
    TradeTableError
        Covariates missing or duplicating pairs of ``countries``.
    """
    countries = tuple(countries)
    s = np.asarray(shares, dtype=float)
    m = len(countries)
    if s.shape != (m, m):
        raise ValueError(f"shares has shape {s.shape}; expected ({m}, {m}) for {m} countries.")
    if not np.isfinite(s).all() or (s <= 0).any():
        bad = [
            (countries[a], countries[b]) for a, b in zip(*np.nonzero(~(np.isfinite(s) & (s > 0))))
        ]
        raise ValueError(f"trade shares must be finite and positive; not so for {_listing(bad)}.")
    if covariates is None:
        covariates = load_covariates()
    pos = {c: k for k, c in enumerate(countries)}
    keep = (
        covariates["importer"].isin(pos)
        & covariates["exporter"].isin(pos)
        & (covariates["importer"] != covariates["exporter"])
    )
    cov = covariates.loc[keep].reset_index(drop=True)
    i = cov["importer"].map(pos).to_numpy(dtype=int)
    j = cov["exporter"].map(pos).to_numpy(dtype=int)
    log_trade = np.log(s[i, j]) - np.log(s[i, i])
    extra = [c for c in cov.columns if c not in _ID_COLUMNS]
    out = pd.concat(
        [cov[list(_ID_COLUMNS)], pd.DataFrame({"log_trade": log_trade}), cov[extra]], axis=1
    )
    if len(out) != m * (m - 1) or out[list(_ID_COLUMNS)].duplicated().any():
        raise TradeTableError(
            f"covariates give {len(out)} rows for the {m * (m - 1)} ordered pairs of "
            f"{list(countries)} (missing or duplicated pairs)."
        )
    return out
