r"""Trade elasticities at the household and the country level (Proposition 1, docs/model.md 5).

For a home country :math:`i` and a partner :math:`j \ne i`, with wages, interest rates and
the stationary distribution :math:`\lambda_i` held at their baseline values (an *impact*
elasticity), the elasticity of relative spending :math:`M_{ij}/M_{ii}` to the price
:math:`p_{ij}` (equivalently to the trade cost :math:`d_{ij}`) is

.. math::

    \theta_{ij} = 1 + \sum_{a,z} (\theta^\pi_{ij} + \theta^c_{ij})\,\omega_{ij}
                    - \sum_{a,z} (\theta^\pi_{ii,j} + \theta^c_{ii,j})\,\omega_{ii},

with micro elasticities at every household state :math:`(a, z)`

.. math::

    \theta^\pi_{ij}(a,z) = \frac{\partial \log \pi_j(a,z)}{\partial \log p_{ij}}, \quad
    \theta^c_{ij}(a,z) = \frac{\partial \log c_j(a,z)}{\partial \log p_{ij}}, \quad
    \theta^\pi_{ii,j}, \theta^c_{ii,j}: \text{ the same for the home variety } i,

and expenditure weights :math:`\omega_{ij}(a,z) = \lambda\pi_j p_{ij} c_j /
\sum_{a,z}\lambda\pi_j p_{ij} c_j`. The *extensive* margin collects the
:math:`\theta^\pi` terms, the *intensive* margin (of expenditure) the rest,
:math:`1 + \sum\theta^c_{ij}\omega_{ij} - \sum\theta^c_{ii,j}\omega_{ii}`, so that
``theta = theta_extensive + theta_intensive``. A household's elasticity for partner j is
:math:`1 + (\theta^\pi_{ij} - \theta^\pi_{ii,j}) + (\theta^c_{ij} - \theta^c_{ii,j})`;
its trade elasticity averages these over partners with its own import-spending weights
:math:`\pi_j p_{ij} c_j / \sum_{k \ne i} \pi_k p_{ik} c_k`. A country's aggregate
elasticity is the trade-share-weighted mean of :math:`\theta_{ij}` over its partners.

The *long-run* elasticity (:func:`longrun_elasticities`) lets the stationary distribution
re-adjust to the new policies too (still at fixed w and R).

Computation
-----------
Derivatives are exact: forward-mode AD through the converged household problem of
country :math:`i` alone (the only problem that depends on :math:`p_{i\cdot}` at fixed
prices), with the implicit-function theorem at the fixed point, by one of the two routes
of :mod:`hatrade.analysis.tangents` (``method="direct"``, the default, or ``"jvp"``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.tangents import income_factors, tangents_direct, tangents_jvp
from hatrade.core.distribution import stationary_distribution
from hatrade.core.errors import EquilibriumError
from hatrade.core.household import HHParams, HHState, solve_fixed_point
from hatrade.core.markets import country_params, model_arrays
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "ElasticityError",
    "ElasticityResult",
    "LongRunResult",
    "WorldElasticities",
    "CountryProblem",
    "country_problem",
    "trade_elasticities",
    "world_elasticities",
    "longrun_elasticities",
    "METHODS",
    "TABLE_COLUMNS",
]

log = logging.getLogger(__name__)

METHODS = ("direct", "jvp")

#: Columns of the partner table (ElasticityResult.table); the CLI writes them in this order.
TABLE_COLUMNS = ("partner", "theta", "theta_extensive", "theta_intensive", "price", "trade_share")


class ElasticityError(EquilibriumError):
    """Elasticities cannot be computed (a non-converged solution, a failed re-solve)."""


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CountryProblem:
    """One country's household problem at the prices of an equilibrium.

    Attributes
    ----------
    index : position of the country in ``eq.countries``.
    code : its code.
    prm : :class:`hatrade.core.household.HHParams` of this country (JAX arrays, no country axis).
    state : converged :class:`hatrade.core.household.HHState` (re-solved from ``eq.state``).
    lam : (Na, Nz) stationary distribution of the equilibrium.
    """

    index: int
    code: str
    prm: HHParams
    state: HHState
    lam: np.ndarray


def _check_converged(eq: Equilibrium) -> None:
    if not isinstance(eq, Equilibrium):
        raise ParameterError(f"eq must be a hatrade.Equilibrium, got {type(eq).__name__}.")
    if not eq.converged:
        raise ElasticityError(
            "elasticities were requested for a solution that did not converge "
            f"(max excess demand {eq.residual:.2e} after {eq.iterations} Newton iterations); "
            "solve the equilibrium to its tolerance first."
        )
    c = np.asarray(eq.policies.c)
    if not np.all(np.isfinite(c)):
        raise ElasticityError(
            "the solution's household policies contain NaN/inf; "
            "elasticities need a converged household problem."
        )


def _check_country(eq: Equilibrium, country: str) -> int:
    if not isinstance(country, str):
        raise ParameterError(f"country must be a country code (str), got {country!r}.")
    i = eq.world.index(country)  # ParameterError naming the allowed codes
    if eq.world.M < 2:
        raise ParameterError(
            f"country {country!r} has no trade partners (a one-country "
            "world): trade elasticities need at least two countries."
        )
    return i


@partial(jax.jit, static_argnums=(2, 3))
def _resolve(prm, x0, tol, max_iter):
    return solve_fixed_point(prm, x0, tol, max_iter)


@enable_x64
def country_problem(
    eq: Equilibrium, country: str, *, hh_tol: float = 1e-10, hh_max_iter: int = 3000
) -> CountryProblem:
    """Country ``country``'s household problem at the equilibrium prices, re-solved from
    the equilibrium's warm start (one or two EGM steps) so that policies and parameters
    are consistent.

    Raises
    ------
    ParameterError
        Unknown country code, or a one-country world.
    ElasticityError
        The equilibrium did not converge, or the household problem fails to converge.
    """
    _check_converged(eq)
    i = _check_country(eq, country)
    arrs = model_arrays(eq.world, eq.household, eq.income)
    pr = eq.prices
    prm_all = country_params(
        arrs, jnp.asarray(pr.w), jnp.asarray(pr.R), jnp.asarray(pr.T), jnp.asarray(pr.beta)
    )
    prm = jax.tree_util.tree_map(lambda a: a[i], prm_all)
    x0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[i], eq.state)
    x, it = _resolve(prm, x0, hh_tol, hh_max_iter)
    it = int(it)
    if it >= hh_max_iter or not bool(jnp.all(jnp.isfinite(x.c))):
        raise ElasticityError(
            f"the household problem of {country} did not converge when "
            f"re-solved at the equilibrium prices ({it} iterations)."
        )
    return CountryProblem(index=i, code=country, prm=prm, state=x, lam=np.asarray(eq.lam[i]))


@partial(jax.jit, static_argnames=("longrun",))
def _aggregate_pieces(prm, lam, partners, home, primal, tang, *, longrun=False):
    """Micro elasticities, weights and aggregates for a batch of partners (jitted)."""
    M = prm.p.shape[0]
    dps = jax.vmap(lambda j: jnp.zeros(M, prm.p.dtype).at[j].set(prm.p[j]))(partners)
    c, a_p, pi = primal
    dc, da, dpi = tang
    spend = pi * c * prm.p  # (Na, Nz, M)
    P = partners.shape[0]
    ar = jnp.arange(P)
    c_j = jnp.moveaxis(c[..., partners], -1, 0)  # (P, Na, Nz)
    pi_j = jnp.moveaxis(pi[..., partners], -1, 0)
    th_c = dc[ar, :, :, partners] / c_j
    th_pi = dpi[ar, :, :, partners] / pi_j
    th_c_h = dc[..., home] / c[None, ..., home]
    th_pi_h = dpi[..., home] / pi[None, ..., home]
    s_j = lam[None] * jnp.moveaxis(spend[..., partners], -1, 0)
    s_h = lam * spend[..., home]
    w_j = s_j / jnp.sum(s_j, axis=(1, 2), keepdims=True)
    w_h = s_h / jnp.sum(s_h)
    ext = jnp.sum(w_j * th_pi, axis=(1, 2)) - jnp.sum(w_h[None] * th_pi_h, axis=(1, 2))
    inten = 1.0 + jnp.sum(w_j * th_c, axis=(1, 2)) - jnp.sum(w_h[None] * th_c_h, axis=(1, 2))
    out = dict(
        c=c,
        a_p=a_p,
        pi=pi,
        spend=spend,
        th_c=th_c,
        th_pi=th_pi,
        th_c_home=th_c_h,
        th_pi_home=th_pi_h,
        w_partner=w_j,
        w_home=w_h,
        theta_ext=ext,
        theta_int=inten,
    )
    # the same elasticity directly from aggregate spending (lambda fixed): a check
    dspend = (dpi * c[None] + pi[None] * dc) * prm.p + pi[None] * c[None] * dps[:, None, None, :]
    dM = jnp.einsum("az,kazj->kj", lam, dspend)
    Mv = jnp.einsum("az,azj->j", lam, spend)
    out["theta_aggregate"] = dM[ar, partners] / Mv[partners] - dM[:, home] / Mv[home]
    if longrun:
        zg, zP = jnp.zeros_like(prm.a_grid), jnp.zeros_like(prm.Pz)
        dlam = jax.vmap(
            lambda d_a, d_pi: jax.jvp(
                stationary_distribution, (a_p, pi, prm.a_grid, prm.Pz), (d_a, d_pi, zg, zP)
            )[1]
        )(da, dpi)
        dM_lr = dM + jnp.einsum("kaz,azj->kj", dlam, spend)
        out["theta_longrun"] = dM_lr[ar, partners] / Mv[partners] - dM_lr[:, home] / Mv[home]
    return out


# ----------------------------------------------------------------------------- results


@dataclass
class ElasticityResult:
    """Proposition 1 elasticities of one country (impact: w, R and lambda fixed).

    Attributes
    ----------
    country : str
    table : pandas.DataFrame
        One row per partner: ``partner``, ``theta``, ``theta_extensive``,
        ``theta_intensive`` (theta = extensive + intensive), ``price`` (:math:`p_{ij}`),
        ``trade_share`` (:math:`s_{ij}`), ``weight`` (:math:`s_{ij}/\\sum_{k\\ne i}
        s_{ik}`, the weight in the country elasticity), ``theta_direct`` (the same
        elasticity computed directly from aggregate spending, a check).
    theta, theta_extensive, theta_intensive : float
        Trade-weighted country elasticity and its two margins.
    micro : xarray.Dataset
        Micro arrays with dims (partner, a_index, z_index): ``th_pi``, ``th_c`` (partner
        variety), ``th_pi_home``, ``th_c_home`` (home variety), ``elasticity`` (household
        elasticity for the partner), ``weight_partner``, ``weight_home`` (expenditure
        weights); and with dims (a_index, z_index): ``household_elasticity`` (averaged
        over partners with the household's import-spending weights), ``import_share``,
        ``distribution``; coordinates ``assets``, ``z``.
    method : 'direct' or 'jvp'
    residual : relative residual of the linear solve (method 'direct'; 0 for 'jvp').
    seconds : wall time.
    """

    country: str
    table: pd.DataFrame
    theta: float
    theta_extensive: float
    theta_intensive: float
    micro: object
    method: str
    residual: float = 0.0
    seconds: float = 0.0
    kind: str = "impact"

    def summary(self) -> dict:
        """JSON-ready: country, theta (trade-weighted), its margins, theta by partner."""
        t = self.table
        return {
            "country": self.country,
            "theta": float(self.theta),
            "theta_extensive": float(self.theta_extensive),
            "theta_intensive": float(self.theta_intensive),
            "kind": "impact elasticity (w, R and the stationary distribution fixed)",
            "theta_min": float(t["theta"].min()),
            "theta_max": float(t["theta"].max()),
            "by_partner": {p: float(v) for p, v in zip(t["partner"], t["theta"])},
            "method": self.method,
            "seconds": float(self.seconds),
        }


@dataclass
class LongRunResult:
    """Impact and long-run elasticities of one country side by side.

    ``table`` columns: partner, theta_impact (lambda fixed, Proposition 1), theta_longrun
    (lambda re-solved at the new policies; w and R still fixed), price, trade_share,
    weight. ``theta_impact`` / ``theta_longrun`` are the trade-weighted country numbers.
    """

    country: str
    table: pd.DataFrame
    theta_impact: float
    theta_longrun: float
    impact: ElasticityResult | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {
            "country": self.country,
            "theta_impact": float(self.theta_impact),
            "theta_longrun": float(self.theta_longrun),
            "by_partner_longrun": {
                p: float(v) for p, v in zip(self.table["partner"], self.table["theta_longrun"])
            },
        }


@dataclass
class WorldElasticities:
    """Elasticities of every pair. ``pairs``: importer, exporter, theta, theta_extensive,
    theta_intensive, price, trade_share, weight; ``by_country``: country, theta,
    theta_extensive, theta_intensive, import_share (trade-weighted over partners)."""

    pairs: pd.DataFrame
    by_country: pd.DataFrame
    seconds: float = 0.0


def _micro_dataset(eq, cp: CountryProblem, partners, out):
    import xarray as xr

    codes = list(eq.countries)
    pc = [codes[j] for j in partners]
    Na, Nz = cp.lam.shape
    th_pi, th_c = np.asarray(out["th_pi"]), np.asarray(out["th_c"])
    th_pi_h, th_c_h = np.asarray(out["th_pi_home"]), np.asarray(out["th_c_home"])
    el = 1.0 + (th_pi - th_pi_h) + (th_c - th_c_h)
    spend = np.asarray(out["spend"])
    imp = np.moveaxis(spend[..., partners], -1, 0)  # (P, Na, Nz)
    omega = imp / imp.sum(axis=0, keepdims=True)
    hh_el = np.sum(omega * el, axis=0)
    tot = spend.sum(axis=-1)
    home_spend = spend[..., cp.index]
    all_imports = tot - home_spend
    dims3 = ("partner", "a_index", "z_index")
    dims2 = ("a_index", "z_index")
    ds = xr.Dataset(
        {
            "th_pi": (dims3, th_pi),
            "th_c": (dims3, th_c),
            "th_pi_home": (dims3, th_pi_h),
            "th_c_home": (dims3, th_c_h),
            "elasticity": (dims3, el),
            "elasticity_extensive": (dims3, th_pi - th_pi_h),
            "elasticity_intensive": (dims3, 1.0 + th_c - th_c_h),
            "weight_partner": (dims3, np.asarray(out["w_partner"])),
            "weight_home": (dims2, np.asarray(out["w_home"])),
            "household_elasticity": (dims2, hh_el),
            "import_share": (dims2, all_imports / tot),
            "expenditure": (dims2, tot),
            "distribution": (dims2, cp.lam),
            "assets": (("a_index",), np.asarray(cp.prm.a_grid)),
            "z": (("z_index",), np.asarray(cp.prm.z)),
        },
        coords={"partner": pc, "a_index": np.arange(1, Na + 1), "z_index": np.arange(1, Nz + 1)},
    )
    desc = {
        "th_pi": "d log pi_j(a,z) / d log p_ij (extensive margin, partner variety)",
        "th_c": "d log c_j(a,z) / d log p_ij (intensive margin, partner variety)",
        "th_pi_home": "d log pi_i(a,z) / d log p_ij (home variety)",
        "th_c_home": "d log c_i(a,z) / d log p_ij (home variety)",
        "elasticity": "household elasticity 1 + (th_pi - th_pi_home) + (th_c - th_c_home)",
        "weight_partner": "expenditure weight lambda pi_j p_ij c_j / sum over states",
        "weight_home": "expenditure weight lambda pi_i p_ii c_i / sum over states",
        "household_elasticity": "partner elasticities averaged with the household's "
        "import-spending weights",
        "import_share": "household import share sum_{j!=i} pi_j p_ij c_j / sum_j pi_j p_ij c_j",
        "expenditure": "household expenditure sum_j pi_j p_ij c_j",
    }
    for k, v in desc.items():
        ds[k].attrs["description"] = v
    ds.attrs.update(
        {"country": cp.code, "kind": "impact elasticities (w, R and the distribution fixed)"}
    )
    return ds


def _run(
    eq,
    country,
    partners,
    method,
    tangent_tol,
    lin_tol,
    max_refine,
    longrun,
    hh_tol=1e-10,
    hh_max_iter=3000,
):
    if method not in METHODS:
        raise ParameterError(f"method = {method!r} is not allowed: use one of {METHODS}.")
    cp = country_problem(eq, country, hh_tol=hh_tol, hh_max_iter=hh_max_iter)
    i, M = cp.index, eq.world.M
    if partners is None:
        pidx = [j for j in range(M) if j != i]
    else:
        if isinstance(partners, str):
            partners = [partners]
        pidx = []
        for code in partners:
            j = eq.world.index(code)
            if j == i:
                raise ParameterError(
                    f"partner {code!r} is the home country; partners must differ from {country!r}."
                )
            pidx.append(j)
        if not pidx:
            raise ParameterError("partners is empty; give at least one partner code.")
    Af, Bf = (jnp.asarray(a) for a in income_factors(np.asarray(cp.prm.Pz)))
    partners_arr = jnp.asarray(pidx, jnp.int32)
    dps = (
        jnp.zeros((len(pidx), M), cp.prm.p.dtype)
        .at[jnp.arange(len(pidx)), partners_arr]
        .set(cp.prm.p[partners_arr])
    )
    residual, refinements = 0.0, 0
    if method == "direct":
        primal, tang, residual, refinements = tangents_direct(
            cp.prm, cp.state, dps, Af, Bf, lin_tol, max_refine
        )
        if not residual <= max(lin_tol, 1e-10) * 10:
            log.warning(
                "direct elasticity solve for %s left a relative residual %.1e; "
                "recomputing with method='jvp'",
                country,
                residual,
            )
            method = "jvp"
    if method == "jvp":
        primal, tang = tangents_jvp(cp.prm, cp.state, dps, hh_tol, hh_max_iter, tangent_tol)
        residual = 0.0
    out = _aggregate_pieces(
        cp.prm, jnp.asarray(cp.lam), partners_arr, i, primal, tang, longrun=longrun
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    out["residual"], out["refinements"] = residual, refinements
    for key in ("theta_ext", "theta_int"):
        if not np.all(np.isfinite(out[key])):
            raise ElasticityError(
                f"non-finite elasticities for {country}; the household "
                "solution is not differentiable here."
            )
    return cp, pidx, out, method


def _partner_table(eq, i, pidx, theta, ext, inten, direct=None):
    codes = list(eq.countries)
    s = eq.trade_shares[i]
    share = s[pidx]
    t = pd.DataFrame(
        {
            "partner": [codes[j] for j in pidx],
            "theta": theta,
            "theta_extensive": ext,
            "theta_intensive": inten,
            "price": np.asarray(eq.p)[i, pidx],
            "trade_share": share,
            "weight": share / share.sum(),
        }
    )
    if direct is not None:
        t["theta_direct"] = direct
    return t


@enable_x64
def trade_elasticities(
    eq: Equilibrium,
    country: str,
    *,
    partners=None,
    method: str = "direct",
    tangent_tol: float | None = None,
    lin_tol: float = 1e-13,
    max_refine: int = 20,
) -> ElasticityResult:
    r"""Proposition 1 trade elasticities of ``country`` against each partner, with the
    micro pieces (impact elasticity: w, R and the stationary distribution fixed).

    Parameters
    ----------
    eq : Equilibrium
        A converged solution (:func:`hatrade.solve_equilibrium`) or households evaluated at
        given prices (:func:`hatrade.evaluate`).
    country : str
        Home country code.
    partners : list of str, optional
        Partner codes (default: every other country).
    method : {'direct', 'jvp'}
        How the implicit derivative of the household fixed point is solved (module
        docstring); both are exact up to their tolerances.
    tangent_tol : float, optional
        Tangent tolerance of ``method='jvp'`` (default: the household tolerance).
    lin_tol, max_refine : tolerance (relative residual) and cap of the iterative refinement
        of ``method='direct'``.

    Returns
    -------
    ElasticityResult

    Raises
    ------
    ParameterError
        Unknown country or partner code, a one-country world, an unknown method.
    ElasticityError
        The solution did not converge (or the household problem fails when re-solved).
    """
    t0 = time.perf_counter()
    cp, pidx, out, method = _run(
        eq, country, partners, method, tangent_tol, lin_tol, max_refine, False
    )
    ext, inten = out["theta_ext"], out["theta_int"]
    theta = ext + inten
    table = _partner_table(eq, cp.index, pidx, theta, ext, inten, out["theta_aggregate"])
    wt = table["weight"].to_numpy()
    res = ElasticityResult(
        country=country,
        table=table,
        theta=float(wt @ theta),
        theta_extensive=float(wt @ ext),
        theta_intensive=float(wt @ inten),
        micro=_micro_dataset(eq, cp, pidx, out),
        method=method,
        residual=float(out["residual"]),
        seconds=time.perf_counter() - t0,
    )
    log.info(
        "elasticities of %s: theta %.4f (%d partners, %s, %.2f s)",
        country,
        res.theta,
        len(pidx),
        method,
        res.seconds,
    )
    return res


@enable_x64
def longrun_elasticities(
    eq: Equilibrium,
    country: str,
    *,
    partners=None,
    method: str = "direct",
    tangent_tol: float | None = None,
    lin_tol: float = 1e-13,
    max_refine: int = 20,
) -> LongRunResult:
    r"""Impact (Proposition 1) and long-run elasticities of ``country`` side by side.

    Long run: :math:`\partial\log(M_{ij}/M_{ii})/\partial\log p_{ij}` when the stationary
    distribution re-solves at the new policies,
    :math:`dM_{ij} = \sum (d\lambda\, \pi_j p_{ij} c_j + \lambda\, d(\pi_j p_{ij} c_j))`
    (exact: the tangent of the stationary distribution by its implicit derivative). Wages
    and R stay fixed, so this is not a general-equilibrium elasticity.
    """
    t0 = time.perf_counter()
    cp, pidx, out, method = _run(
        eq, country, partners, method, tangent_tol, lin_tol, max_refine, True
    )
    ext, inten = out["theta_ext"], out["theta_int"]
    table = _partner_table(eq, cp.index, pidx, ext + inten, ext, inten)
    table = table.rename(columns={"theta": "theta_impact"})
    table.insert(2, "theta_longrun", out["theta_longrun"])
    table = table[
        [
            "partner",
            "theta_impact",
            "theta_longrun",
            "theta_extensive",
            "theta_intensive",
            "price",
            "trade_share",
            "weight",
        ]
    ]
    wt = table["weight"].to_numpy()
    impact = ElasticityResult(
        country=country,
        table=_partner_table(eq, cp.index, pidx, ext + inten, ext, inten, out["theta_aggregate"]),
        theta=float(wt @ (ext + inten)),
        theta_extensive=float(wt @ ext),
        theta_intensive=float(wt @ inten),
        micro=_micro_dataset(eq, cp, pidx, out),
        method=method,
        residual=float(out["residual"]),
        seconds=time.perf_counter() - t0,
    )
    return LongRunResult(
        country=country,
        table=table,
        theta_impact=impact.theta,
        theta_longrun=float(wt @ out["theta_longrun"]),
        impact=impact,
    )


@enable_x64
def world_elasticities(
    eq: Equilibrium, *, method: str = "direct", tangent_tol: float | None = None
) -> WorldElasticities:
    """Proposition 1 elasticities of every ordered pair (one country at a time; every
    country's problem has the same shapes, so it compiles once)."""
    t0 = time.perf_counter()
    _check_converged(eq)
    if eq.world.M < 2:
        raise ParameterError(
            "a one-country world has no trade partners: trade elasticities "
            "need at least two countries."
        )
    pairs, rows = [], []
    for c in eq.countries:
        r = trade_elasticities(eq, c, method=method, tangent_tol=tangent_tol)
        t = r.table.drop(columns=["theta_direct"]).rename(columns={"partner": "exporter"})
        t.insert(0, "importer", c)
        pairs.append(t)
        rows.append((c, r.theta, r.theta_extensive, r.theta_intensive, float(eq.import_share[c])))
    by_country = pd.DataFrame(
        rows, columns=["country", "theta", "theta_extensive", "theta_intensive", "import_share"]
    )
    return WorldElasticities(
        pairs=pd.concat(pairs, ignore_index=True),
        by_country=by_country,
        seconds=time.perf_counter() - t0,
    )
