r"""The Jacobian of a transition's excess demands in its unknown price paths.

Unknowns per period t (the steady state's :class:`~hatrade.core.markets.Layout` with R
solved for): M - 1 wages (the last from :math:`\bar w_t = 1`), the return
:math:`R_{t+1}` on the assets chosen at t (one under financial globalization, one per
country under autarky) and, with tariffs, the transfers :math:`T_{i,t}`. Targets per
period: the steady state's relative excess demands (goods markets but the first, bonds,
tariff budgets; :func:`~hatrade.core.markets.excess_demands`).

Each country's household-block Jacobian (:func:`hatrade.core.fakenews.fake_news_jacobian`,
at the terminal steady state; in practice its fake-news matrix, the chain applied before the
diagonal sums, which are taken once for the world) is chained through the known maps

.. math::

    \frac{dp_{ik,s}}{p_{ik}} = \frac{dw_{k,s}}{w_k}, \qquad
    d\,\mathrm{goods}_{j,t} = \frac{\sum_i dM_{ij,t}/(1+t_{ij}) - N_j\,dw_{j,t}}{Y_j},
    \qquad d\,\mathrm{bonds}_t = \frac{\sum_i dA_{i,t}}{\sum_i Y_i}, \qquad
    d\,\mathrm{budget}_{i,t} = \frac{L_i\,dT_{i,t} - \sum_j \frac{t_{ij}}{1+t_{ij}} dM_{ij,t}}{Y_i},

(the excess demands' derivatives at a point where they vanish), with the return
:math:`R_s` of direction ``R`` the unknown of period s - 1. With policy instruments
(:mod:`hatrade.core.instruments`) the same maps hold (tariff revenue per household is still
:math:`T_{i,t}`, however it is rebated, and the labor tax leaves :math:`Y_j = w_j N_j`);
the household block's ``T`` and ``w`` directions carry the rebate weights and the tax's
net transfer (:func:`~hatrade.core.fakenews.fake_news_jacobian`). The result is the exact
Jacobian at the terminal steady state, (T n) x (T n), rows and columns period-major.
"""

from __future__ import annotations

import numpy as np

from hatrade.core.fakenews import accumulate, fake_news_matrix
from hatrade.core.markets import Layout, country_params
from hatrade.core.x64 import enable_x64

__all__ = ["transition_jacobian", "wage_map"]


def wage_map(M: int) -> np.ndarray:
    """dw/du (M, M - 1): the free wages, and the last one from mean(w) = 1."""
    D = np.zeros((M, M - 1))
    D[: M - 1] = np.eye(M - 1)
    D[M - 1] = -1.0
    return D


def _slots(layout: Layout, i: int) -> tuple[int, int | None]:
    """Column of country i's rate and (with tariffs) transfer in a period's unknowns."""
    M = layout.M
    r = M - 1 + (i if layout.financial == "autarky" else 0)
    n_rate = M if layout.financial == "autarky" else 1
    return r, (M - 1 + n_rate + i if layout.tariffs else None)


def _instruments(arrs, i: int):
    """Country i's (rebate weights, labor-tax rate), or None when the world has no
    instruments (:func:`hatrade.core.markets.income_transfers`)."""
    if arrs.tau is None and arrs.rebate is None:
        return None
    return np.asarray(arrs.rebate[i]), float(arrs.tau[i])


def _directions(layout: Layout, i: int, w) -> np.ndarray:
    """Country i's input directions (D, K) per unknown it responds to: each free wage (its
    relative price changes and the wage in income), the return R, and (with tariffs) the
    transfer. D = M + tariffs, two fewer than the inputs (M prices, w, R, T)."""
    M = layout.M
    K = M + 2 + int(layout.tariffs)
    Dw = wage_map(M)
    E = np.zeros((M + int(layout.tariffs), K))
    E[: M - 1, :M] = (Dw / np.asarray(w)[:, None]).T  # relative price changes
    E[: M - 1, M] = Dw[i]  # the wage in income
    E[M - 1, M + 1] = 1.0  # R
    if layout.tariffs:
        E[M, M + 2] = 1.0  # T
    return E


def _country_block(F, layout: Layout, i: int, n_t: int) -> np.ndarray:
    """Country i's fake-news matrix in the unknowns: FG[t, o, s, m] (t, s < n_t), from its
    fake-news matrix F in the directions of :func:`_directions`.

    The maps from the unknowns to the block's inputs are linear and the same in every
    period, so they commute with the Jacobian's diagonal sums
    (:func:`~hatrade.core.fakenews.accumulate`): they are applied to F, and the sums are
    taken once for the whole world. The return :math:`R_s` (direction ``R``) is the unknown
    of period s - 1, a shift of one horizon that also commutes with the sums."""
    M, n = layout.M, layout.n
    r, tr = _slots(layout, i)
    nF, n_out, S = min(F.shape[0], n_t), F.shape[1], F.shape[2]
    F = F[:nF]
    FG = np.zeros((min(nF + 1, n_t), n_out, min(S, n_t), n))
    FG[:nF, :, :, : M - 1] = F[:, :, :n_t, : M - 1]
    if tr is not None:
        FG[:nF, :, :, tr] = F[:, :, :n_t, M]
    # the column of R_s is the Jacobian's column s + 1 of direction R: J[t, s + 1] sums
    # F[t - k, s + 1 - k] for k = 0..min(t, s + 1), i.e. the shifted F's diagonal plus, for
    # t > s, the term F[t - s - 1, 0] (R_0, carried in, is no unknown): put it in column 0
    sR = min(S - 1, n_t)
    FG[:nF, :, :sR, r] += F[:, :, 1 : sR + 1, M - 1]
    FG[1:, :, 0, r] += F[: FG.shape[0] - 1, :, 0, M - 1]
    return FG


@enable_x64
def transition_jacobian(
    arrs, layout: Layout, new, n_t: int, log=None, tol: float = 1e-12
) -> np.ndarray:
    """The (T n, T n) Jacobian at the steady state ``new`` (module docstring).

    Parameters
    ----------
    arrs : ModelArrays of the terminal world.
    layout : Layout
        The period's unknowns and targets (R solved for, beta fixed).
    new : Equilibrium
        The terminal steady state (prices, household states, distributions).
    n_t : int
        Periods T.
    log : logging.Logger, optional
        Progress, one debug line per country.
    tol : float
        Truncation of the fake-news passes (:func:`~hatrade.core.fakenews.fake_news_jacobian`).
    """
    M, n = layout.M, layout.n
    w = np.asarray(new.prices.w, float)
    prm = country_params(arrs, w, np.asarray(new.prices.R), np.asarray(new.prices.T), new.beta)
    agg = new.aggregates
    Y, N, L = np.asarray(agg["Y"]), np.asarray(agg["N"]), np.asarray(arrs.L)
    t = np.asarray(arrs.t)
    FH = np.zeros((n_t, n, n_t, n))  # the world's fake-news matrix in the unknowns
    n_rate = M if layout.financial == "autarky" else 1
    for i in range(M):
        pick = lambda a, i=i: a[i]  # noqa: E731
        prm_i = type(prm)(*(pick(x) for x in prm))
        x_i = type(new.state)(*(pick(np.asarray(x)) for x in new.state))
        F = fake_news_matrix(
            prm_i, x_i, new.lam[i], L[i], n_t + 1, layout.tariffs, _instruments(arrs, i), tol,
            directions=_directions(layout, i, w),
        )  # fmt: skip
        G = _country_block(F, layout, i, n_t)
        del F
        FHi = FH[: G.shape[0], :, : G.shape[2]]  # a view
        FHi[:, : M - 1] += G[:, 1:M] / ((1.0 + t[i, 1:]) * Y[1:])[None, :, None, None]
        if layout.financial == "autarky":
            FHi[:, M - 1 + i] += G[:, M] / Y[i]
        else:
            FHi[:, M - 1] += G[:, M] / Y.sum()
        if layout.tariffs:
            share = t[i] / (1.0 + t[i])
            FHi[:, M - 1 + n_rate + i] -= np.einsum("j,tjsm->tsm", share, G[:, :M]) / Y[i]
        if log is not None:
            log.debug("transition Jacobian: household block %d of %d", i + 1, M)
    JH = accumulate(FH, n_t)
    del FH
    Dw = wage_map(M)
    direct = np.zeros((n, n))
    for j in range(1, M):
        direct[j - 1, : M - 1] -= N[j] * Dw[j] / Y[j]
    if layout.tariffs:
        for i in range(M):
            direct[M - 1 + n_rate + i, _slots(layout, i)[1]] += L[i] / Y[i]
    idx = np.arange(n_t)
    JH[idx, :, idx, :] += direct[None]
    return JH.reshape(n_t * n, n_t * n)
