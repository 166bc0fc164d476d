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
of :mod:`hatrade.analysis.tangents` (``method="direct"``, the default, or ``"jvp"``). The
micro elasticities, weights and aggregates are formed in
:mod:`hatrade.analysis.elasticity_micro`; the result objects live in
:mod:`hatrade.analysis.elasticity_results` (both re-exported here where public).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.elasticity_micro import aggregate_pieces, micro_dataset
from hatrade.analysis.elasticity_results import ElasticityResult, LongRunResult, WorldElasticities
from hatrade.analysis.tangents import income_factors, tangents_direct, tangents_jvp
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
    out = aggregate_pieces(
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
        micro=micro_dataset(eq, cp, pidx, out),
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
        micro=micro_dataset(eq, cp, pidx, out),
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
