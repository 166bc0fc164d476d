"""Validated parameter containers.

Two plain, frozen dataclasses describe a model: :class:`Household` (preferences, the asset
grid, the income process) and :class:`World` (countries, TFP, labor, trade costs, tariffs,
financial regime). Every field is checked when the object is built, so that bad input fails
before any numerical work, with a message naming the field and the allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from hatrade.core.errors import ParameterError, check_identifier
from hatrade.core.instruments import check_labor_tax, check_rebate

__all__ = ["Household", "World", "ParameterError", "FINANCIAL_REGIMES", "check_identifier"]

FINANCIAL_REGIMES = ("globalization", "autarky")


def _check(cond: bool, name: str, allowed: str, value) -> None:
    if not cond:
        raise ParameterError(f"{name} = {value!r} is not allowed: {name} must be {allowed}.")


def _real(x) -> bool:
    """A finite real number: int or float (numpy ones too), not a bool or a string."""
    return (
        isinstance(x, (int, float, np.integer, np.floating))
        and not isinstance(x, (bool, np.bool_))
        and bool(np.isfinite(x))
    )


def _integer(x) -> bool:
    """An integer (numpy ones too), not a bool: 20.0 and 20.7 are not integers."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


@dataclass(frozen=True)
class Household:
    r"""Household parameters (docs/model.md sections 1 and 1.3).

    Period utility is :math:`u(c) + \psi_i(z,j) + \epsilon_j` with
    :math:`u(c) = c^{1-\gamma}/(1-\gamma)` (log at :math:`\gamma = 1`), Type-1 extreme value
    taste shocks of scale :math:`\sigma_i = \sigma_\epsilon A_i^{1-\gamma}` and home bias
    :math:`\psi_i(z,i) = \psi_{slope} A_i^{1-\gamma} \log z_{perm}`.

    Parameters
    ----------
    gamma : float
        Coefficient of relative risk aversion (> 0).
    sigma_eps : float
        Scale of the logit taste shocks (> 0).
    psi_slope : float
        Slope of the home-variety shifter in log persistent income.
    beta : float or None
        Discount factor in (0, 1); None when it is solved for (calibration).
    phi : float
        Borrowing limit, as a multiple of country TFP (>= 0): :math:`a' \ge -\phi A_i`.
    a_max : float
        Top of the (linear) asset grid, as a multiple of TFP (> -phi).
    n_a : int
        Number of asset grid points (>= 3).
    rho_perm, var_perm, n_perm : float, float, int
        Persistence, innovation variance and number of states of the persistent income
        component (Rouwenhorst).
    var_iid, n_iid : float, int
        Variance and number of states of the transitory component (Rouwenhorst, rho = 0).
    """

    gamma: float = 1.45
    sigma_eps: float = 0.33
    psi_slope: float = 0.725
    beta: float | None = None
    phi: float = 0.5
    a_max: float = 8.0
    n_a: int = 100
    rho_perm: float = 0.90
    var_perm: float = 0.039
    n_perm: int = 5
    var_iid: float = 0.0522
    n_iid: int = 2

    def __post_init__(self):
        _check(_real(self.gamma) and self.gamma > 0, "gamma", "a finite number > 0", self.gamma)
        _check(
            _real(self.sigma_eps) and self.sigma_eps > 0,
            "sigma_eps",
            "a finite number > 0",
            self.sigma_eps,
        )
        _check(_real(self.psi_slope), "psi_slope", "a finite number", self.psi_slope)
        if self.beta is not None:
            _check(
                _real(self.beta) and 0 < self.beta < 1,
                "beta",
                "a number in the open interval (0, 1)",
                self.beta,
            )
        _check(_real(self.phi) and self.phi >= 0, "phi", "a finite number >= 0", self.phi)
        _check(
            _real(self.a_max) and self.a_max > -self.phi,
            "a_max",
            f"a finite number > -phi = {-self.phi}",
            self.a_max,
        )
        _check(_integer(self.n_a) and self.n_a >= 3, "n_a", "an integer >= 3", self.n_a)
        _check(
            _real(self.rho_perm) and -1 < self.rho_perm < 1,
            "rho_perm",
            "a number in (-1, 1)",
            self.rho_perm,
        )
        _check(
            _real(self.var_perm) and self.var_perm >= 0,
            "var_perm",
            "a finite number >= 0",
            self.var_perm,
        )
        _check(
            _real(self.var_iid) and self.var_iid >= 0,
            "var_iid",
            "a finite number >= 0",
            self.var_iid,
        )
        _check(_integer(self.n_perm) and self.n_perm >= 1, "n_perm", "an integer >= 1", self.n_perm)
        _check(_integer(self.n_iid) and self.n_iid >= 1, "n_iid", "an integer >= 1", self.n_iid)

    def replace(self, **changes) -> "Household":
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            k: (None if v is None else (int(v) if isinstance(v, (int, np.integer)) else float(v)))
            for k, v in self.__dict__.items()
        }


def _as_float_array(x, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        raw = np.asarray(x)
        if raw.dtype.kind not in "iuf":  # no strings, booleans, None or ragged lists
            raise TypeError(raw.dtype)
        arr = raw.astype(float)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} = {x!r} is not allowed: {name} must be numbers (not strings or booleans)."
        ) from None
    if arr.shape != shape:
        raise ParameterError(
            f"{name} has shape {arr.shape}; it must have shape {shape} "
            f"(one entry per country{'' if len(shape) == 1 else ' pair'})."
        )
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} has non-finite entries; all entries must be finite.")
    return arr


@dataclass(frozen=True, eq=False)
class World:
    r"""A world of M countries (docs/model.md sections 1 and 3).

    Parameters
    ----------
    countries : sequence of str
        Country codes (ISO3 for the Eaton-Kortum data), unique; each is used in file names,
        so it must match :data:`hatrade.core.errors.IDENTIFIER_PATTERN` (letters, digits,
        '.', '_', '+', '-'; starting with a letter or digit; no '..'; at most 64 characters).
    tfp : array (M,)
        TFP :math:`A_i > 0`.
    labor : array (M,)
        Labor force :math:`L_i > 0` (mass of households).
    d : array (M, M)
        Iceberg trade costs :math:`d_{ij} \ge 1` (importer i, exporter j), :math:`d_{ii} = 1`.
    tariffs : array (M, M) or None
        Ad-valorem tariffs :math:`t_{ij} \ge 0` with zero diagonal; revenue is rebated
        lump sum to the importer's households.
    financial : {"globalization", "autarky"}
        One world interest rate with a world bond market, or one rate per country with
        each bond market closed.
    allow_d_below_one : bool
        Accept iceberg costs below 1 off the diagonal (still positive and finite). False by
        default: costs below 1 are almost always an input error. The paper's counterfactuals
        scale calibrated costs without a new floor (docs/model.md 5), which takes some pairs below
        1; :func:`hatrade.analysis.counterfactual.apply_scenario` sets this flag when a scenario asks
        for that explicitly.
    rebate : str
        How tariff revenue is paid out to the importer's households
        (:data:`hatrade.core.instruments.REBATE_RULES`): ``"lump-sum"`` (default),
        ``"labor-income"`` or ``"group:<income group>"``.
    labor_tax : array (M,) or None
        Labor-income tax rates :math:`\tau_i \in [0, 1)` whose revenue is rebated lump sum
        (:mod:`hatrade.core.instruments`); None: no tax.
    """

    countries: tuple
    tfp: np.ndarray
    labor: np.ndarray
    d: np.ndarray
    tariffs: np.ndarray | None = None
    financial: Literal["globalization", "autarky"] = "globalization"
    meta: dict = field(default_factory=dict)
    allow_d_below_one: bool = False
    rebate: str = "lump-sum"
    labor_tax: np.ndarray | None = None

    def __post_init__(self):
        if isinstance(self.countries, str) or not hasattr(self.countries, "__iter__"):
            raise ParameterError(
                f"countries = {self.countries!r} is not allowed: it must be a sequence of "
                "country codes."
            )
        countries = tuple(self.countries)
        for k, c in enumerate(countries):
            check_identifier(c, f"countries[{k}]")
        M = len(countries)
        if M < 1:
            raise ParameterError("countries is empty; a world needs at least one country.")
        if len(set(countries)) != M:
            dup = sorted({c for c in countries if countries.count(c) > 1})
            raise ParameterError(f"countries has duplicates {dup}; country codes must be unique.")
        object.__setattr__(self, "countries", countries)
        tfp = _as_float_array(self.tfp, "tfp", (M,))
        _check(bool(np.all(tfp > 0)), "tfp", "positive for every country", tfp.tolist())
        labor = _as_float_array(self.labor, "labor", (M,))
        _check(bool(np.all(labor > 0)), "labor", "positive for every country", labor.tolist())
        d = _as_float_array(self.d, "trade_costs", (M, M))
        if np.any(np.abs(np.diag(d) - 1.0) > 1e-12):
            raise ParameterError(
                f"trade_costs diagonal is {np.diag(d).tolist()}; d_ii must be 1 "
                "(no cost of buying one's own variety)."
            )
        if not isinstance(self.allow_d_below_one, (bool, np.bool_)):
            raise ParameterError(
                f"allow_d_below_one = {self.allow_d_below_one!r} is not allowed: "
                "it must be true or false."
            )
        if self.allow_d_below_one:
            if np.any(d <= 0):
                i, j = np.argwhere(d <= 0)[0]
                raise ParameterError(
                    f"trade_costs[{countries[i]},{countries[j]}] = {d[i, j]}; "
                    "iceberg costs must be positive."
                )
        elif np.any(d < 1.0 - 1e-12):
            i, j = np.argwhere(d < 1.0 - 1e-12)[0]
            raise ParameterError(
                f"trade_costs[{countries[i]},{countries[j]}] = {d[i, j]} < 1; "
                "iceberg costs must be >= 1 (allow_d_below_one = true accepts "
                "positive costs below 1, as the paper's counterfactuals do)."
            )
        tariffs = self.tariffs
        if tariffs is not None:
            tariffs = _as_float_array(tariffs, "tariffs", (M, M))
            _check(bool(np.all(tariffs >= 0)), "tariffs", "non-negative", tariffs.tolist())
            _check(
                bool(np.all(np.diag(tariffs) == 0)),
                "tariffs",
                "zero on the diagonal (no tariff on one's own variety)",
                np.diag(tariffs).tolist(),
            )
        if self.financial not in FINANCIAL_REGIMES:
            raise ParameterError(
                f"financial = {self.financial!r} is not allowed: financial must be "
                f"one of {FINANCIAL_REGIMES}."
            )
        check_rebate(self.rebate, "rebate")
        if self.labor_tax is not None:
            tax = _as_float_array(self.labor_tax, "labor_tax", (M,))
            for k, x in enumerate(tax):
                check_labor_tax(x, f"labor_tax[{countries[k]}]")
            object.__setattr__(self, "labor_tax", tax)
        object.__setattr__(self, "tfp", tfp)
        object.__setattr__(self, "labor", labor)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "tariffs", tariffs)

    @property
    def has_tariffs(self) -> bool:
        """Whether any tariff is positive (then tariff revenue is rebated and the transfers
        are equilibrium unknowns)."""
        return self.tariffs is not None and bool(np.any(np.asarray(self.tariffs) > 0))

    @property
    def has_instruments(self) -> bool:
        """Whether a non-lump-sum rebate rule or a positive labor tax is set (then the
        households' non-asset income carries the extra terms of
        :mod:`hatrade.core.instruments`)."""
        tax = self.labor_tax is not None and bool(np.any(np.asarray(self.labor_tax) > 0))
        return tax or self.rebate != "lump-sum"

    @property
    def M(self) -> int:
        return len(self.countries)

    def index(self, code: str) -> int:
        """Position of a country code; a clear error for unknown codes."""
        try:
            return self.countries.index(code)
        except ValueError:
            raise ParameterError(
                f"unknown country code {code!r}; allowed: {', '.join(self.countries)}"
            ) from None

    def replace(self, **changes) -> "World":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "countries": list(self.countries),
            "tfp": self.tfp.tolist(),
            "labor": self.labor.tolist(),
            "trade_costs": self.d.tolist(),
            "tariffs": None if self.tariffs is None else self.tariffs.tolist(),
            "financial": self.financial,
            **({"allow_d_below_one": True} if self.allow_d_below_one else {}),
            **({"rebate": self.rebate} if self.rebate != "lump-sum" else {}),
            **({"labor_tax": self.labor_tax.tolist()} if self.labor_tax is not None else {}),
        }
