r"""A gravity specification: a formula over the pair covariates of a trade data set.

The formula is a sum of column names, ``"lndist + contiguity + common_language + pta"``
(an optional left side ``trade ~`` is ignored). The regression behind it is, for importer
:math:`i \ne j`,

.. math:: \log(X_{ij}/X_{ii}) = a_i + m_j + x_{ij}'\delta + \varepsilon_{ij}

with importer and exporter fixed effects. When the first terms of the formula are 0/1
dummies that put every pair in exactly one group (Eaton and Kortum's distance bins), they
carry the constant; otherwise a constant ``const`` is added in front. Checked before any
solve (:func:`build_specification`): every term is a column; it is numeric and finite on
the international pairs; none is constant; none is collinear with the fixed effects and
the terms before it (the error names it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hatrade.data import COVARIATES, DataFileError
from hatrade.data.tidy import TradeData

__all__ = [
    "EK_FORMULA",
    "SpecificationError",
    "Specification",
    "parse_formula",
    "build_specification",
]

#: The paper's specification: six distance bins, border, language, EC, EFTA.
EK_FORMULA = " + ".join(COVARIATES)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]\(\),-]*$")
_RANK_TOL = 1e-9


class SpecificationError(DataFileError):
    """A formula that cannot be estimated on the data; the message names the term."""


@dataclass(frozen=True, eq=False)
class Specification:
    """A checked specification on one data set.

    Attributes
    ----------
    formula : str
    names : tuple of str
        Regressors in order: ``const`` first when added, then the formula's terms.
    n_bins : int
        Number of leading regressors that partition the pairs (1 for ``const``).
    countries : tuple of str
    importer, exporter : int arrays (P,)
        Indices of the international pairs, importer-major in country order.
    X : (P, K) array
        The regressors on those pairs.
    """

    formula: str
    names: tuple
    n_bins: int
    countries: tuple
    importer: np.ndarray
    exporter: np.ndarray
    X: np.ndarray

    @property
    def terms(self) -> tuple:
        return self.names[1:] if self.names[0] == "const" else self.names


def parse_formula(formula: str) -> tuple:
    """The terms of ``"a + b + c"`` (an optional ``lhs ~`` is dropped).

    Raises
    ------
    SpecificationError
        Empty formulas, terms that are not column names, or a term given twice.
    """
    if not isinstance(formula, str) or not formula.strip():
        raise SpecificationError("formula is empty; give covariates like 'lndist + pta'.")
    rhs = formula.split("~", 1)[-1]
    terms = tuple(t.strip() for t in rhs.split("+"))
    bad = [t for t in terms if not _NAME.match(t)]
    if bad:
        raise SpecificationError(
            f"formula {formula!r}: term(s) {bad} are not column names; the formula is a sum "
            "of covariate columns, e.g. 'lndist + contiguity + pta'."
        )
    dup = sorted({t for t in terms if terms.count(t) > 1})
    if dup:
        raise SpecificationError(f"formula {formula!r}: term(s) {dup} appear more than once.")
    return terms


def _pairs(data: TradeData):
    pos = {c: k for k, c in enumerate(data.codes)}
    t = data.trade
    t = t[(t["exporter"] != t["importer"]) & t["exporter"].isin(pos) & t["importer"].isin(pos)]
    i = t["importer"].map(pos).to_numpy(int)
    j = t["exporter"].map(pos).to_numpy(int)
    order = np.lexsort((j, i))
    return t.iloc[order], i[order], j[order]


def _leading_partition(X: np.ndarray) -> int:
    """Number of leading 0/1 columns that put every row in exactly one group (0 if none)."""
    total = np.zeros(X.shape[0])
    for k in range(X.shape[1]):
        col = X[:, k]
        if not np.all((col == 0) | (col == 1)):
            return 0
        total = total + col
        if np.all(total == 1):
            return k + 1
        if np.any(total > 1):
            return 0
    return 0


def _fixed_effects(M: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    P = len(i)
    D = np.zeros((P, 2 * (M - 1)))
    rows = np.arange(P)
    D[rows[i < M - 1], i[i < M - 1]] = 1.0
    D[rows[j < M - 1], M - 1 + j[j < M - 1]] = 1.0
    return D


def _check_rank(D: np.ndarray, X: np.ndarray, names: tuple) -> None:
    """Each regressor must add to the rank of the fixed effects and the regressors before it."""
    cols = D
    rank = np.linalg.matrix_rank(cols)
    for k, name in enumerate(names):
        cols = np.hstack([cols, X[:, k : k + 1]])
        r = np.linalg.matrix_rank(cols)
        if r == rank:
            raise SpecificationError(
                f"covariate {name!r} is collinear with the importer and exporter fixed effects"
                + (f" and {list(names[:k])}" if k else "")
                + "; drop it from the formula."
            )
        rank = r


def build_specification(data: TradeData, formula: str) -> Specification:
    """Check ``formula`` against ``data`` and build the regressors (module docstring).

    Raises
    ------
    SpecificationError
        An unknown column (the message lists the covariates), a non-numeric or missing
        value, a constant covariate, or one collinear with the fixed effects (named).
    """
    terms = parse_formula(formula)
    unknown = [t for t in terms if t not in data.covariates]
    if unknown:
        raise SpecificationError(
            f"formula {formula!r}: unknown column(s) {unknown}; the data's covariates are "
            f"{list(data.covariates)}."
        )
    if data.M < 3:
        raise SpecificationError(f"a gravity regression needs at least 3 countries, got {data.M}.")
    t, i, j = _pairs(data)
    X = np.empty((len(t), len(terms)))
    for k, name in enumerate(terms):
        try:
            X[:, k] = t[name].to_numpy(float)
        except (TypeError, ValueError):
            raise SpecificationError(f"covariate {name!r} is not numeric.") from None
        if not np.isfinite(X[:, k]).all():
            raise SpecificationError(
                f"covariate {name!r} has missing values on international pairs."
            )
        if np.ptp(X[:, k]) == 0:
            raise SpecificationError(
                f"covariate {name!r} is constant ({X[0, k]:g}) on the international pairs: it is "
                "collinear with the fixed effects; drop it from the formula."
            )
    n_bins = _leading_partition(X)
    names = terms
    if n_bins == 0:
        X, names, n_bins = np.hstack([np.ones((len(t), 1)), X]), ("const",) + terms, 1
    _check_rank(_fixed_effects(data.M, i, j), X, names)
    return Specification(formula, names, n_bins, data.codes, i, j, X)
