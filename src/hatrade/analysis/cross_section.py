r"""The household cross-section of a country: who buys what, how price elastic, MPCs.

For every household state :math:`(a, z)` of country :math:`i` (weighted by the stationary
distribution :math:`\lambda`):

- ``labor_income`` :math:`w z`; ``income`` :math:`w z + (R-1) a + T`; ``assets`` :math:`a`;
- ``expenditure`` :math:`e = \sum_j \pi_j p_{ij} c_j` (expected over the taste shocks);
- ``import_share`` :math:`\sum_{j \ne i} \pi_j p_{ij} c_j / e`;
- ``elasticity``: the household trade elasticity (Proposition 1's micro pieces, see
  :mod:`hatrade.analysis.elasticity`), :math:`\sum_{j\ne i}\omega_j [1 + (\theta^\pi_{ij} -
  \theta^\pi_{ii,j}) + (\theta^c_{ij} - \theta^c_{ii,j})]` with the household's
  import-spending weights :math:`\omega_j = \pi_j p_{ij} c_j / \sum_{k \ne i}\pi_k p_{ik} c_k`;
- ``mpc``: the marginal propensity to *spend* out of a one-time transfer :math:`\tau`
  (docs/model.md 5),

  .. math::

      \mathrm{MPC}(a,z) = \sum_j \pi_j(a,z)\, p_{ij}\,
          \frac{c_j(a,z;\,T+\tau) - c_j(a,z;\,T)}{\tau}, \qquad \tau = 0.008,

  where :math:`c_j(\cdot; T+\tau)` is *one* EGM step of the household problem with the
  transfer raised by :math:`\tau` and next period's policies held fixed: next period's
  consumption and values (hence :math:`E(a', z)` and the endogenous points
  :math:`\tilde c(a')`) are those of the stationary solution; only the budget moves, i.e.
  the endogenous asset points shift to :math:`\tilde a - \tau/R` and today's
  :math:`a'(a)` and :math:`c_j(a) = (Ra + wz + T + \tau - a'(a))/p_{ij}` are re-read from
  them. Choice probabilities are held at the baseline (the MPC of a household of given
  variety, averaged with :math:`\pi_j`). ``mpc_marginal`` is the exact derivative
  (:math:`\tau \to 0`, forward-mode AD of the same step); it differs from ``mpc`` where a
  finite transfer crosses a kink (the borrowing constraint). Constrained households that
  stay constrained have an MPC of exactly one.

Group tables (:func:`micro_table`) are weighted *exactly* by :math:`\lambda`: groups are
quantile ranges of a ranking variable (labor income :math:`wz`, or expenditure), and a
set of states with the same value of the ranking variable (e.g. all asset levels of one
income state) that straddles a quantile boundary is split proportionally, so that every
group has exactly its nominal population mass (:mod:`hatrade.analysis.groups`: the same
groups as the welfare summaries and the calibration's home-share gap). Statistics within
a group are :math:`\lambda`-weighted means of the household values (the average household, not a
spending-weighted aggregate). :func:`simulate_households` draws a seeded panel of
households instead (the paper simulated 100,000).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.elasticity import ElasticityResult, country_problem, trade_elasticities
from hatrade.analysis.groups import INCOME_GROUPS, group_weights
from hatrade.analysis.groups import QUINTILES as GROUP_QUINTILES
from hatrade.core.household import egm_step, policies
from hatrade.core.memory import check_memory, estimate_simulation_bytes
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "CrossSection",
    "cross_section",
    "mpc_arrays",
    "micro_table",
    "group_weights",
    "simulate_households",
    "INCOME_GROUPS",
    "QUINTILES",
    "MICRO_COLUMNS",
    "DEFAULT_TRANSFER",
]

log = logging.getLogger(__name__)

#: The paper's transfer for the MPC (in units of the numeraire).
DEFAULT_TRANSFER = 0.008

#: Quintile groups of the micro table: the expenditure quintiles of
#: :data:`hatrade.analysis.groups.QUINTILES`, labelled q1..q5.
QUINTILES: dict[str, tuple[float, float]] = {k.lower(): v for k, v in GROUP_QUINTILES.items()}

#: Columns of the micro table (the CLI writes them first, in this order).
MICRO_COLUMNS = ("grouping", "group", "import_share", "elasticity", "mpc", "mass")

_XS_VARS = (
    "assets",
    "z",
    "labor_income",
    "income",
    "expenditure",
    "import_share",
    "elasticity",
    "mpc",
    "mpc_marginal",
    "mass",
)


@dataclass
class CrossSection:
    """Per-state cross-section of one country.

    Attributes
    ----------
    country : str
    table : pandas.DataFrame
        One row per state: ``a_index``, ``z_index`` (1-based), ``assets``, ``z``,
        ``labor_income``, ``income``, ``expenditure``, ``import_share``, ``elasticity``,
        ``mpc``, ``mpc_marginal``, ``mass`` (the stationary distribution, sums to one).
    transfer : float
        The transfer used for ``mpc``.
    elasticities : ElasticityResult
        The elasticities the ``elasticity`` column comes from.
    """

    country: str
    table: pd.DataFrame
    transfer: float
    elasticities: ElasticityResult

    def to_dataset(self):
        """The cross-section as an ``xarray.Dataset`` with dims (a_index, z_index)."""
        import xarray as xr

        t = self.table.set_index(["a_index", "z_index"])
        ds = xr.Dataset.from_dataframe(t)
        ds.attrs.update(
            {
                "country": self.country,
                "transfer": self.transfer,
                "mpc": "one EGM step, next period's policies fixed, pi fixed: "
                "sum_j pi_j p_j dc_j / transfer",
            }
        )
        return ds


@jax.jit
def _mpc(prm, x, transfer):
    pol = policies(x, prm)
    c_T = egm_step(x, prm._replace(T=prm.T + transfer))[0].c
    finite = jnp.sum(pol.pi * prm.p * (c_T - pol.c), axis=-1) / transfer
    dc = jax.jvp(lambda T: egm_step(x, prm._replace(T=T))[0].c, (prm.T,), (jnp.ones_like(prm.T),))[
        1
    ]
    marginal = jnp.sum(pol.pi * prm.p * dc, axis=-1)
    return finite, marginal


@enable_x64
def mpc_arrays(eq: Equilibrium, country: str, transfer: float = DEFAULT_TRANSFER):
    """Marginal propensities to spend (Na, Nz) of ``country``: (finite-transfer, exact).

    See the module docstring for the definition.
    """
    if not (np.isfinite(transfer) and transfer > 0):
        raise ParameterError(f"transfer = {transfer!r} is not allowed: it must be a number > 0.")
    cp = country_problem(eq, country)
    f, m = _mpc(cp.prm, cp.state, jnp.asarray(float(transfer)))
    return np.asarray(f), np.asarray(m)


@enable_x64
def cross_section(
    eq: Equilibrium,
    country: str,
    *,
    transfer: float = DEFAULT_TRANSFER,
    elasticities: ElasticityResult | None = None,
) -> CrossSection:
    """The per-state cross-section of ``country`` (module docstring for the definitions).

    Parameters
    ----------
    eq : Equilibrium
    country : str
    transfer : float
        One-time transfer for the MPC (default 0.008, the paper's).
    elasticities : ElasticityResult, optional
        Precomputed :func:`hatrade.analysis.elasticity.trade_elasticities` of this country.

    Raises
    ------
    ParameterError
        Unknown country, one-country world, non-positive transfer.
    hatrade.analysis.elasticity.ElasticityError
        A non-converged solution.
    """
    if elasticities is None:
        elasticities = trade_elasticities(eq, country)
    elif elasticities.country != country:
        raise ParameterError(f"elasticities are for {elasticities.country!r}, not {country!r}.")
    mpc, mpc_m = mpc_arrays(eq, country, transfer)
    i = eq.world.index(country)
    ds = elasticities.micro
    lam = np.asarray(eq.lam[i])
    Na, Nz = lam.shape
    a = np.asarray(eq.a_grid[i])
    z = np.asarray(eq.income.z)
    w, R, T = (float(np.asarray(v)[i]) for v in (eq.prices.w, eq.prices.R, eq.prices.T))
    A, Z = np.meshgrid(a, z, indexing="ij")
    ai, zi = np.meshgrid(np.arange(1, Na + 1), np.arange(1, Nz + 1), indexing="ij")
    table = pd.DataFrame(
        {
            "a_index": ai.ravel(),
            "z_index": zi.ravel(),
            "assets": A.ravel(),
            "z": Z.ravel(),
            "labor_income": (w * Z).ravel(),
            "income": (w * Z + (R - 1.0) * A + T).ravel(),
            "expenditure": ds["expenditure"].values.ravel(),
            "import_share": ds["import_share"].values.ravel(),
            "elasticity": ds["household_elasticity"].values.ravel(),
            "mpc": mpc.ravel(),
            "mpc_marginal": mpc_m.ravel(),
            "mass": lam.ravel(),
        }
    )
    return CrossSection(
        country=country, table=table, transfer=float(transfer), elasticities=elasticities
    )


# ----------------------------------------------------------------------------- groups


def _group_rows(df: pd.DataFrame, grouping: str, rank: np.ndarray, groups: dict, mass):
    rows = []
    total = float(np.sum(mass))
    for name, (lo, hi) in groups.items():
        wt = group_weights(rank, mass, lo, hi)
        s = wt.sum()
        row = {"grouping": grouping, "group": name}
        for col in ("import_share", "elasticity", "mpc", "labor_income", "expenditure", "assets"):
            row[col] = float(np.sum(wt * df[col].to_numpy()) / s)
        row["mass"] = float(s / total)
        rows.append(row)
    return rows


def micro_table(
    xs, *, income_groups: dict | None = None, quintiles: dict | None = None
) -> pd.DataFrame:
    r"""Import share, trade elasticity and MPC by income group and by expenditure quintile.

    Parameters
    ----------
    xs : CrossSection or pandas.DataFrame
        A :func:`cross_section` (exact weights :math:`\lambda`), or a table with columns
        ``labor_income``, ``expenditure``, ``import_share``, ``elasticity``, ``mpc``,
        ``assets`` and ``mass`` (e.g. from :func:`simulate_households`, mass ``1/N``).
    income_groups, quintiles : dict name -> (lo, hi), optional
        Defaults :data:`INCOME_GROUPS` (below median, 45-55th percentile band, above
        median, bottom and top 20%) and :data:`QUINTILES` of expenditure.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MICRO_COLUMNS` then ``labor_income``, ``expenditure``, ``assets``
        (group means); ``grouping`` is ``"income"`` or ``"expenditure"``; ``mass`` is the
        group's population share.
    """
    df = xs.table if isinstance(xs, CrossSection) else xs
    need = ["labor_income", "expenditure", "import_share", "elasticity", "mpc", "assets", "mass"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ParameterError(f"the cross-section table lacks column(s) {missing}.")
    mass = df["mass"].to_numpy(float)
    rows = _group_rows(
        df, "income", df["labor_income"].to_numpy(float), income_groups or INCOME_GROUPS, mass
    )
    rows += _group_rows(
        df, "expenditure", df["expenditure"].to_numpy(float), quintiles or QUINTILES, mass
    )
    out = pd.DataFrame(rows)
    return out[list(MICRO_COLUMNS) + ["labor_income", "expenditure", "assets"]]


# ----------------------------------------------------------------------------- simulation


def _interp_rows(grid, k, wt, arr, zi):
    """Linear interpolation in assets of arr (Na, Nz[, ...]) at households (k, wt, zi)."""
    lo = arr[k, zi]
    hi = arr[k + 1, zi]
    if lo.ndim > 1:
        wt = wt[:, None]
    return wt * lo + (1.0 - wt) * hi


def _locate_assets(x, grid):
    """Grid interval k and weight wt on its lower point of assets x (equidistant grid)."""
    Na = grid.shape[0]
    h = (grid[-1] - grid[0]) / (Na - 1)
    k = np.clip(np.floor((x - grid[0]) / h).astype(int), 0, Na - 2)
    wt = np.clip((grid[k + 1] - x) / h, 0.0, 1.0)
    return k, wt


def _draw_variety(rng, grid, k, wt, pi, zi):
    """A variety per household from its choice probabilities (interpolated in assets)."""
    probs = _interp_rows(grid, k, wt, pi, zi)  # (n, M)
    cum = np.cumsum(probs, axis=1)
    u = rng.random(zi.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _simulate_panel(eq: Equilibrium, i: int, rng, n: int, periods: int):
    """Assets and income-state indices of ``n`` households of country ``i`` after
    ``periods`` periods from a draw of the stationary distribution."""
    lam = np.asarray(eq.lam[i], float)
    Na, Nz = lam.shape
    grid = np.asarray(eq.a_grid[i], float)
    a_p = np.asarray(eq.policies.a_p[i], float)  # (Na, Nz, M)
    pi = np.asarray(eq.policies.pi[i], float)
    Pcum = np.cumsum(np.asarray(eq.income.P, float), axis=1)
    p_flat = np.clip(lam.ravel(), 0.0, None)
    s = rng.choice(Na * Nz, size=n, p=p_flat / p_flat.sum())
    a = grid[s // Nz].copy()
    zi = s % Nz
    for _ in range(periods):
        k, wt = _locate_assets(a, grid)
        variety = _draw_variety(rng, grid, k, wt, pi, zi)
        a = wt * a_p[k, zi, variety] + (1.0 - wt) * a_p[k + 1, zi, variety]
        u = rng.random(n)
        zi = np.minimum((Pcum[zi] < u[:, None]).sum(axis=1), Nz - 1)
    return a, zi


def simulate_households(
    eq: Equilibrium,
    country: str,
    *,
    n: int = 100_000,
    periods: int = 50,
    seed: int = 0,
    xs: CrossSection | None = None,
) -> pd.DataFrame:
    r"""A seeded simulated cross-section of ``n`` households of ``country``.

    Households start at states drawn from the stationary distribution :math:`\lambda`, then
    live ``periods`` periods: each period a variety is drawn from
    :math:`\pi(a, z)`, assets move to :math:`a'_j(a, z)` (linear in :math:`a` between grid
    points, so assets leave the grid) and income moves with the Markov chain. The final
    period's households are returned, with their per-state quantities (expenditure, import
    share, elasticity, MPC) interpolated linearly in assets from :func:`cross_section`.

    Parameters
    ----------
    n : int
        Number of households (the paper used 100,000).
    periods : int
        Periods simulated after the draw from :math:`\lambda` (>= 0).
    seed : int
        Seed of ``numpy.random.default_rng``: the same seed gives the same panel.
    xs : CrossSection, optional
        A precomputed cross-section of this country.

    Returns
    -------
    pandas.DataFrame
        One row per household: ``assets``, ``z_index`` (1-based), ``z``, ``labor_income``,
        ``income``, ``expenditure``, ``import_share``, ``elasticity``, ``mpc``, ``variety``
        (drawn at the returned state), ``mass`` (= 1/n).
    """
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ParameterError(f"n = {n!r} is not allowed: it must be an integer >= 1.")
    if not (isinstance(periods, (int, np.integer)) and periods >= 0):
        raise ParameterError(f"periods = {periods!r} is not allowed: it must be an integer >= 0.")
    check_memory(estimate_simulation_bytes(n, eq.world.M, eq.income.z.size), f"n = {n} households")
    if xs is None:
        xs = cross_section(eq, country)
    elif xs.country != country:
        raise ParameterError(f"xs is the cross-section of {xs.country!r}, not {country!r}.")
    i = eq.world.index(country)
    rng = np.random.default_rng(seed)
    lam = np.asarray(eq.lam[i], float)
    Na, Nz = lam.shape
    grid = np.asarray(eq.a_grid[i], float)
    a, zi = _simulate_panel(eq, i, rng, n, periods)
    k, wt = _locate_assets(a, grid)
    variety = _draw_variety(rng, grid, k, wt, np.asarray(eq.policies.pi[i], float), zi)
    t = xs.table
    out = {"assets": a, "z_index": zi + 1, "z": np.asarray(eq.income.z)[zi]}
    w, R, T = (float(np.asarray(v)[i]) for v in (eq.prices.w, eq.prices.R, eq.prices.T))
    out["labor_income"] = w * out["z"]
    out["income"] = out["labor_income"] + (R - 1.0) * a + T
    for col in ("expenditure", "import_share", "elasticity", "mpc"):
        arr = t[col].to_numpy().reshape(Na, Nz)
        out[col] = _interp_rows(grid, k, wt, arr, zi)
    out["variety"] = np.asarray(eq.countries)[variety]
    out["mass"] = np.full(n, 1.0 / n)
    return pd.DataFrame(out)
