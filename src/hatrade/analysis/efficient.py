r"""The efficient allocation against the market's: trade shares, gravity, elasticities, welfare.

The public entry point for Proposition 4. :mod:`hatrade.analysis.planner` solves the
planner's problem (:func:`solve_planner`, :class:`PlannerSolution`; the derivation is in its
docstring) and :mod:`hatrade.analysis.planner_prop4` gives the planner's trade elasticities
and the welfare effects of trade costs (:func:`efficient_elasticities`,
:func:`planner_welfare_gain`); both are re-exported here. This module compares an efficient
allocation with a decentralized :class:`~hatrade.solve.equilibrium.Equilibrium` of the same
world: trade shares pair by pair (:func:`compare`), the gravity regression on both
(:func:`gravity_comparison`), Proposition 1 elasticities of the market
(:func:`decentralized_elasticities`), and everything ``hatrade efficient`` writes
(:func:`efficient_report`).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.planner import (
    WEIGHT_KINDS,
    PlannerError,
    PlannerSolution,
    check_equilibrium,
    solve_planner,
)
from hatrade.analysis.planner_prop4 import (
    PlannerWelfareGain,
    aggregate_elasticities,
    efficient_elasticities,
    planner_welfare_gain,
)
from hatrade.core.markets import country_params, model_arrays
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "PlannerError",
    "PlannerSolution",
    "PlannerWelfareGain",
    "solve_planner",
    "efficient_elasticities",
    "planner_welfare_gain",
    "decentralized_elasticities",
    "compare",
    "gravity_comparison",
    "comparison_summary",
    "aggregate_elasticities",
    "efficient_report",
    "WEIGHT_KINDS",
]

log = logging.getLogger(__name__)

#: What the elasticity and welfare entries of :func:`efficient_report`'s summary mean.
REPORT_NOTES = {
    "theta_efficient_prop4": "-(1/sigma_i) u'(c_ij) c_ij: elasticity of pi_ij(z)/pi_ii(z)"
    " to d_ij at fixed multipliers (Proposition 4)",
    "theta_efficient_choice": "elasticity of country-level choice shares pi_ij/pi_ii "
    "(exact AD; differs from prop4 through the mix over z "
    "when psi_slope != 0)",
    "theta_efficient_value": "elasticity of X_ij/X_ii, trade in value at shadow "
    "prices (exact AD) = choice + 1 - 1/gamma",
    "theta_decentralized_prop1": "Proposition 1: d log(M_ij/M_ii)/d log p_ij, "
    "households re-solved, w, R, lambda fixed (exact AD)",
    "theta_decentralized_extensive": "its extensive (choice) margin, comparable to "
    "theta_efficient_choice",
    "aggregate_elasticity": "trade-share-weighted means over partners j != i",
    "welfare_prop4": "dW/dlog d_ij = omega_i sigma_i theta_ij pi_ij L_i/(1-beta); "
    "gain_pct = percent of everyone's consumption",
}

# ----------------------------------------------------------------------------- decentralized


@enable_x64
def decentralized_elasticities(
    eq: Equilibrium, *, tangent_tol: float | None = None
) -> pd.DataFrame:
    r"""Proposition 1 elasticities of a decentralized equilibrium, by exact AD.

    :math:`\theta_{ij} = \partial\log(M_{ij}/M_{ii})/\partial\log p_{ij}` with households
    re-solved at the new price (implicit differentiation through the household fixed point)
    while wages, R and the stationary distribution stay at the equilibrium (the impact
    elasticity of docs/model.md section 5). One forward direction per exporter column j
    (perturbing :math:`p_{ij}` for every importer :math:`i \ne j` at once: countries'
    household problems are independent at fixed prices), M directions in all.

    :func:`hatrade.analysis.elasticity.world_elasticities` computes the same numbers faster (and
    their margins); this independent route through
    :func:`hatrade.core.household.solve_fixed_point`'s tangent iteration is kept as a
    cross-check of that route.

    Returns
    -------
    pandas.DataFrame
        importer, exporter, trade_share, theta_prop1 (pairs i != j).
    """
    from hatrade.core.household import policies
    from hatrade.core.markets import solve_countries

    arrs = model_arrays(eq.world, eq.household, eq.income)
    pr = eq.prices
    prm0 = country_params(
        arrs, jnp.asarray(pr.w), jnp.asarray(pr.R), jnp.asarray(pr.T), jnp.asarray(pr.beta)
    )
    x0 = eq.state
    lam = jnp.asarray(eq.lam)
    L = arrs.L
    M = eq.world.M
    off = 1.0 - jnp.eye(M)
    logp0 = jnp.log(prm0.p)

    def f(e):
        p = jnp.exp(logp0 + e[None, :] * off)
        prm = prm0._replace(p=p)
        x, _ = solve_countries(prm, x0, 1e-10, 3000, tangent_tol)
        pol = jax.vmap(policies)(x, prm)
        Mij = L[:, None] * jnp.einsum("kaz,kazj->kj", lam, pol.pi * pol.c * p[:, None, None, :])
        lM = jnp.log(Mij)
        return lM - jnp.diag(lM)[:, None]

    J = np.asarray(jax.jit(jax.jacfwd(f))(jnp.zeros(M)))  # (M, M, M): [i, j, k]
    i, j = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    th = J[i, j, j]
    offm = i != j
    c = np.asarray(eq.countries)
    return pd.DataFrame(
        {
            "importer": c[i[offm]],
            "exporter": c[j[offm]],
            "trade_share": eq.trade_shares[offm],
            "theta_prop1": th[offm],
        }
    )


# ----------------------------------------------------------------------------- comparison


def compare(
    planner: PlannerSolution,
    eq: Equilibrium,
    *,
    elasticities: bool = False,
    efficient_theta: pd.DataFrame | None = None,
    decentralized_theta: pd.DataFrame | None = None,
) -> pd.DataFrame:
    r"""Efficient vs decentralized trade, one row per ordered pair (diagonal included).

    Columns: importer, exporter, share_efficient, share_decentralized,
    log_ratio (:math:`\log(s^{eff}_{ij}/s^{dec}_{ij})`), trades_more (efficient > market,
    for :math:`i \ne j`), trade_costs. With ``elasticities=True`` (or tables given) also
    theta_efficient_prop4, theta_efficient_value and theta_decentralized_prop1 (NaN on the
    diagonal); the decentralized one costs M forward AD directions through the households.
    """
    check_equilibrium(eq, planner.world)
    c = list(planner.countries)
    M = planner.M
    se, sd = planner.trade_shares, eq.trade_shares
    i, j = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    df = pd.DataFrame(
        {
            "importer": np.asarray(c)[i.ravel()],
            "exporter": np.asarray(c)[j.ravel()],
            "share_efficient": se.ravel(),
            "share_decentralized": sd.ravel(),
            "log_ratio": np.log(se / sd).ravel(),
            "trades_more": np.where(i != j, se > sd, False).ravel(),
            "trade_costs": planner.world.d.ravel(),
        }
    )
    if elasticities or efficient_theta is not None or decentralized_theta is not None:
        te = efficient_theta if efficient_theta is not None else efficient_elasticities(planner)
        td = (
            decentralized_theta
            if decentralized_theta is not None
            else decentralized_elasticities(eq)
        )
        df = df.merge(
            te[["importer", "exporter", "theta_prop4", "theta_value_ad"]].rename(
                columns={
                    "theta_prop4": "theta_efficient_prop4",
                    "theta_value_ad": "theta_efficient_value",
                }
            ),
            on=["importer", "exporter"],
            how="left",
        )
        df = df.merge(
            td[["importer", "exporter", "theta_prop1"]].rename(
                columns={"theta_prop1": "theta_decentralized_prop1"}
            ),
            on=["importer", "exporter"],
            how="left",
        )
    return df


def gravity_comparison(planner: PlannerSolution, eq: Equilibrium | None = None) -> pd.DataFrame:
    """The gravity regression (docs/model.md 4) on efficient (and decentralized) trade shares.

    Needs countries covered by the Eaton-Kortum covariates (at least 3). Returns a table
    indexed by the 10 coefficient names plus ``S_<ISO>`` and ``theta_m_<ISO>`` rows, with
    columns ``efficient`` and (if ``eq``) ``decentralized``.
    """
    from hatrade.analysis.gravity import gravity_regression, model_trade_table

    def run(shares):
        g = gravity_regression(
            model_trade_table(shares, planner.countries), countries=planner.countries
        )
        return pd.concat([g.coefficients, g.S.add_prefix("S_"), g.theta_m.add_prefix("theta_m_")])

    out = {"efficient": run(planner.trade_shares)}
    if eq is not None:
        out["decentralized"] = run(eq.trade_shares)
    return pd.DataFrame(out)


def comparison_summary(
    planner: PlannerSolution,
    eq: Equilibrium,
    table: pd.DataFrame,
    gravity: pd.DataFrame | None = None,
) -> dict:
    r"""Numbers describing how efficient trade differs from the market's (JSON-ready).

    ``table`` is :func:`compare`'s output (elasticity columns optional). Keys: pair counts
    with a higher spending share :math:`s_{ij}` (``pairs_trading_more_efficient``) and with
    higher normalized trade :math:`s_{ij}/s_{ii}`
    (``pairs_higher_normalized_trade_efficient``) in the efficient allocation; the mean of
    :math:`\log(s^{eff}_{ij}/s^{dec}_{ij})` over :math:`i \ne j` and its correlation with
    :math:`\log d_{ij}`; import shares; the pairs with the largest and smallest log ratios;
    the correlation of an importer's mean log ratio with its log wage (does market
    incompleteness curb the trade of rich or of poor countries?); country aggregate
    elasticities (trade-share-weighted over partners, each allocation with its own shares);
    and the gravity coefficients when given.
    """
    off = table[table["importer"] != table["exporter"]]
    diag = table[table["importer"] == table["exporter"]].set_index("importer")
    # log(s_ij/s_ii), the gravity regression's dependent variable
    norm_e = np.log(
        off["share_efficient"].to_numpy() / off["importer"].map(diag["share_efficient"]).to_numpy()
    )
    norm_d = np.log(
        off["share_decentralized"].to_numpy()
        / off["importer"].map(diag["share_decentralized"]).to_numpy()
    )
    lr = off["log_ratio"].to_numpy()
    out = {
        "pairs": int(len(off)),
        "pairs_trading_more_efficient": int(off["trades_more"].sum()),
        "pairs_trading_less_efficient": int((~off["trades_more"]).sum()),
        "mean_log_ratio_offdiagonal": float(lr.mean()),
        "pairs_higher_normalized_trade_efficient": int(np.sum(norm_e > norm_d)),
        "corr_log_ratio_log_trade_costs": float(np.corrcoef(lr, np.log(off["trade_costs"]))[0, 1])
        if np.ptp(np.log(off["trade_costs"])) > 0
        else None,
        "import_share": {
            k: {
                "efficient": float(planner.import_share[k]),
                "decentralized": float(eq.import_share[k]),
            }
            for k in planner.countries
        },
        "pairs_largest_log_ratio": off.nlargest(5, "log_ratio")[
            ["importer", "exporter", "log_ratio"]
        ].to_dict(orient="records"),
        "pairs_smallest_log_ratio": off.nsmallest(5, "log_ratio")[
            ["importer", "exporter", "log_ratio"]
        ].to_dict(orient="records"),
    }
    # does incompleteness tilt trade by importer income? corr of importer's mean log ratio
    # with its wage
    by_imp = off.groupby("importer", sort=False)["log_ratio"].mean()
    wage = eq.wages.reindex(by_imp.index)
    if len(by_imp) > 2 and np.ptp(np.log(wage.to_numpy())) > 0:
        out["corr_importer_mean_log_ratio_wage"] = float(np.corrcoef(by_imp, np.log(wage))[0, 1])
    for col in (
        "theta_efficient_prop4",
        "theta_efficient_choice",
        "theta_efficient_value",
        "theta_decentralized_prop1",
        "theta_decentralized_extensive",
    ):
        if col in off:
            agg = off.assign(
                w=off["share_decentralized" if "decentralized" in col else "share_efficient"]
            )
            out.setdefault("aggregate_elasticity", {})[col] = {
                k: float(np.sum(t[col] * t["w"]) / np.sum(t["w"]))
                for k, t in agg.groupby("importer", sort=False)
            }
    out["gravity"] = (
        None
        if gravity is None
        else {col: {k: float(v) for k, v in gravity[col].items()} for col in gravity.columns}
    )
    return out


@enable_x64
def efficient_report(
    planner: PlannerSolution,
    eq: Equilibrium,
    *,
    decentralized_theta: bool | pd.DataFrame = True,
    tangent_tol: float | None = 1e-8,
    welfare_change: float = 0.9,
) -> tuple[pd.DataFrame, dict]:
    """Everything ``hatrade efficient`` writes: the pair table and a JSON-ready summary.

    Parameters
    ----------
    planner, eq : the efficient allocation and the decentralized equilibrium of one world.
    decentralized_theta : bool or DataFrame
        Compute Proposition 1 elasticities of ``eq`` (True: with
        :func:`hatrade.analysis.elasticity.world_elasticities` when available, exact, which
        also gives the extensive margin; otherwise with
        :func:`decentralized_elasticities`), use a given table (columns importer, exporter
        and ``theta_prop1`` or ``theta`` [+ ``theta_extensive``]), or skip (False).
    tangent_tol : tolerance of the tangent iteration when :func:`decentralized_elasticities`
        is used, relative to the direct effect (a looser tolerance is faster and less
        accurate).
    welfare_change : d'/d of Proposition 4's experiments (all pairs; and the US's imports
        when ``USA`` is a country).

    Returns
    -------
    table : DataFrame
        importer, exporter, share_efficient, share_decentralized, then log_ratio,
        trade_costs and the elasticity columns (NaN on the diagonal).
    summary : dict
    """
    te = efficient_elasticities(planner)
    if isinstance(decentralized_theta, pd.DataFrame):
        td = _normalize_decentralized(decentralized_theta)
    elif decentralized_theta:
        td = _decentralized_table(eq, tangent_tol)
    else:
        td = None
    full = _report_table(planner, eq, te, td)
    try:
        grav = gravity_comparison(planner, eq)
    except (ValueError, KeyError) as err:  # TradeTableError is a ValueError
        log.info("gravity regression skipped: %s", err)
        grav = None
    summ = comparison_summary(planner, eq, full, grav)
    table = full.drop(columns=["trades_more"])
    if grav is not None and tuple(planner.countries) == _ek_countries():
        from hatrade.analysis.gravity import gravity_regression
        from hatrade.data import load_trade_data

        g = gravity_regression(load_trade_data())
        summ["gravity"]["data"] = {k: float(v) for k, v in g.coefficients.items()}
    summary = {
        "weights_kind": planner.weights_kind,
        "planner": planner.summary(),
        "decentralized": {
            "beta": float(eq.beta),
            "R": eq.summary()["R"],
            "wages": {k: float(v) for k, v in eq.wages.items()},
        },
        "comparison": summ,
        "welfare_prop4": _welfare_summaries(planner, welfare_change),
        "notes": dict(REPORT_NOTES),
    }
    return table, summary


def _report_table(
    planner: PlannerSolution, eq: Equilibrium, te: pd.DataFrame, td: pd.DataFrame | None
) -> pd.DataFrame:
    """:func:`compare`'s table with the efficient (``te``) and decentralized (``td``, if any)
    elasticity columns."""
    full = compare(planner, eq)
    cols = te[["importer", "exporter", "theta_prop4", "theta_choice_ad", "theta_value_ad"]].rename(
        columns={
            "theta_prop4": "theta_efficient_prop4",
            "theta_choice_ad": "theta_efficient_choice",
            "theta_value_ad": "theta_efficient_value",
        }
    )
    full = full.merge(cols, on=["importer", "exporter"], how="left")
    if td is not None:
        keep = [c for c in ("theta_prop1", "theta_prop1_extensive") if c in td]
        full = full.merge(
            td[["importer", "exporter"] + keep].rename(
                columns={
                    "theta_prop1": "theta_decentralized_prop1",
                    "theta_prop1_extensive": "theta_decentralized_extensive",
                }
            ),
            on=["importer", "exporter"],
            how="left",
        )
    return full


def _welfare_summaries(planner: PlannerSolution, change: float) -> dict:
    """Proposition 4's experiments: all pairs, and the US's imports when ``USA`` is a
    country (empty without a discount factor)."""
    welfare = {}
    if planner.beta is not None:
        welfare["global"] = planner_welfare_gain(planner, change=change, exact=True).summary()
        if "USA" in planner.countries:
            welfare["unilateral_USA"] = planner_welfare_gain(
                planner, change=change, importers="USA", exact=True
            ).summary()
    return welfare


def _normalize_decentralized(td: pd.DataFrame) -> pd.DataFrame:
    """Accept :func:`decentralized_elasticities` or ``world_elasticities(...).pairs``."""
    if "theta_prop1" not in td:
        if "theta" not in td:
            raise ParameterError(
                "decentralized elasticity table needs columns importer, "
                "exporter and theta_prop1 (or theta)."
            )
        td = td.rename(columns={"theta": "theta_prop1", "theta_extensive": "theta_prop1_extensive"})
    return td


def _decentralized_table(eq: Equilibrium, tangent_tol) -> pd.DataFrame:
    try:
        from hatrade.analysis.elasticity import world_elasticities
    except ImportError:  # pragma: no cover - the module ships with hatrade
        return decentralized_elasticities(eq, tangent_tol=tangent_tol)
    return _normalize_decentralized(world_elasticities(eq).pairs)


def _ek_countries() -> tuple:
    from hatrade.data import COUNTRIES

    return tuple(COUNTRIES)
