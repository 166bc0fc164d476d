"""Welfare along the transition path (issue 4's published-gap check): does comparing values
at the start of the transition, instead of the new steady state's, move the mean gains?

Perfect-foresight transition after an unexpected, permanent 10% cut of trade costs (US
imports, or `global`), financial globalization, beta fixed: the baseline's stationary
distribution at t = 0, R_0 = the old R (bonds bought before the shock), 18 wages (+ the
numeraire mean(w) = 1) and R_{t+1} per period clearing goods and bond markets for T periods,
the new steady state after. Newton on the whole path with the sequence-space Jacobian of
every country's household block at the new steady state (fake-news algorithm, Auclert et
al. 2021). Prints the wage and R paths and the US mean and quintile gains, linearized
around lambda = 1 with the exact dV/dlambda (the same linearization for the steady-state
comparison, printed beside it, so the difference is the transition's effect). The EV's
first-root-above-1 states (borrowers near the limit) have no linear counterpart: means
here leave them out.

    python benchmarks/welfare_transition.py baseline [T] [global]     # or: log
"""

import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

jax.config.update("jax_enable_x64", True)
import hatrade.welfare as Wf
from hatrade.analysis.counterfactual import Scenario, baseline_equilibrium, run_counterfactual
from hatrade.core.distribution import push
from hatrade.core.household import HHParams, HHState, Policies, logit, step
from hatrade.core.markets import aggregate, country_params, model_arrays


def _prm_t(arrs, W, Rnow, beta):
    M = W.shape[-1]
    return jax.vmap(lambda w, R: country_params(arrs, w, R, jnp.zeros(M), beta))(W, Rnow)


@jax.jit
def backward(arrs, W, Rn, R0, xT, wT, beta):
    """W (T,M) wages, Rn (T,) = R_{t+1}, R0 = R_0, xT terminal state (M countries), wT terminal wages."""
    M = W.shape[1]
    Rnow = jnp.concatenate([jnp.reshape(R0, (1,)), Rn[:-1]])
    prm = _prm_t(arrs, W, Rnow, beta)
    pT = country_params(arrs, wT, Rn[-1], jnp.zeros(M), beta).p
    p_next = jnp.concatenate([prm.p[1:], pT[None]], axis=0)

    def body(x_next, inp):
        prm_t, pn, Rn_t = inp

        def one(c, v, pr, pn_i):
            mu = jnp.exp(-pr.gamma * jnp.log(c))
            c_new, _, v_new, a_p = step(c, mu, v, pr, pn_i, Rn_t)
            pi, V = logit(v_new, pr)
            return (c_new, v_new), (a_p, pi, c_new, V)

        (c, v), out = jax.vmap(one)(x_next.c, x_next.v, prm_t, pn)
        return HHState(c, v), out

    _, (a_p, pi, c, V) = jax.lax.scan(body, xT, (prm, p_next, Rn), reverse=True)
    return a_p, pi, c, V, prm


@jax.jit
def forward(arrs, a_p, pi, c, prm, lam0):
    """Distributions from lam0 and the aggregates of every period (world.aggregate)."""

    def body(lam, inp):
        ap, pi_, c_, prm_t = inp
        agg = aggregate(arrs, prm_t, Policies(c=c_, a_p=ap, v=None, pi=pi_, V=None), lam)
        lam_n = jax.vmap(push)(lam, ap, pi_, prm_t.a_grid, prm_t.Pz)
        return lam_n, (agg["X"], agg["Y"], agg["A"])

    _, out = jax.lax.scan(body, lam0, (a_p, pi, c, prm))
    return out


def residuals(arrs, W, Rn, R0, xT, wT, beta, lam0, Yss):
    a_p, pi, c, V, prm = backward(arrs, W, Rn, R0, xT, wT, beta)
    X, Y, Ap = forward(arrs, a_p, pi, c, prm, lam0)
    goods = (jnp.sum(X, axis=1) - Y) / Yss[None, :]  # (T, M)
    num = jnp.mean(W, axis=1) - 1.0
    bond = jnp.sum(Ap, axis=1) / jnp.sum(Yss)
    H = jnp.concatenate([goods[:, 1:], num[:, None], bond[:, None]], axis=1)
    return H, V


# ---------------------------------------------------------------- fake news, one country
@partial(jax.jit, static_argnums=(8,))
def fake_news_country(arrs_i, x_ss, w_ss, R_ss, beta, lam_ss, L_i, gamma, Tn):
    """J[t, o, s, k]: d output o at t / d input k at s, outputs (M_i., A'_i), inputs (w (M), R_now)."""
    d, A, t_ = arrs_i["d"], arrs_i["A"], arrs_i["t"]
    g, Pz = arrs_i["a_grid"], arrs_i["Pz"]
    M = w_ss.shape[0]

    def prm_of(w, R):
        return HHParams(
            p=d * w / A * (1 + t_),
            w=w[arrs_i["i"]],
            R=R,
            T=jnp.asarray(0.0),
            beta=beta,
            gamma=gamma,
            sigma=arrs_i["sigma"],
            psi=arrs_i["psi"],
            a_grid=g,
            z=arrs_i["z"],
            Pz=Pz,
        )

    def step(c, v, w_now, R_now, w_next, R_next):
        pr = prm_of(w_now, R_now)
        mu = jnp.exp(-gamma * jnp.log(c))
        c_new, _, v_new, a_p = step(c, mu, v, pr, d * w_next / A * (1 + t_), R_next)
        pi, _ = logit(v_new, pr)
        return c_new, v_new, a_p, pi

    def outputs(a_p, pi, c, w_now):
        p = d * w_now / A * (1 + t_)
        Mi = L_i * jnp.einsum("az,azj->j", lam_ss, pi * c * p[None, None, :])
        Ai = L_i * jnp.einsum("az,azj->", lam_ss, pi * a_p)
        return jnp.concatenate([Mi, Ai[None]])

    c0, _, ap0, pi0 = step(x_ss.c, x_ss.v, w_ss, R_ss, w_ss, R_ss)
    K = M + 1
    E_in = jnp.eye(K)
    cur = jnp.zeros(Tn).at[0].set(1.0)
    nxt = jnp.zeros(Tn).at[1].set(1.0)

    def per_dir(e):
        dw, dR = e[:M], e[M]

        def body(carry, sc):
            dc, dv = carry
            a, b = sc
            _, (dcn, dvn, dap, dpi) = jax.jvp(
                step,
                (x_ss.c, x_ss.v, w_ss, R_ss, w_ss, R_ss),
                (dc, dv, a * dw, a * dR, b * dw, b * dR),
            )
            _, dY = jax.jvp(outputs, (ap0, pi0, c0, w_ss), (dap, dpi, dcn, a * dw))
            _, dD = jax.jvp(lambda ap_, pi_: push(lam_ss, ap_, pi_, g, Pz), (ap0, pi0), (dap, dpi))
            return (dcn, dvn), (dY, dD)

        _, (dY, dD) = jax.lax.scan(
            body, (jnp.zeros_like(x_ss.c), jnp.zeros_like(x_ss.v)), (cur, nxt)
        )
        return dY, dD  # (T, O), (T, Na, Nz)

    dY, dD = jax.vmap(per_dir)(E_in)  # (K, T, O), (K, T, Na, Nz)
    # expectation vectors
    y = jnp.concatenate(
        [
            L_i * jnp.moveaxis(pi0 * c0 * (d * w_ss / A * (1 + t_))[None, None, :], -1, 0),
            (L_i * jnp.sum(pi0 * ap0, axis=-1))[None],
        ],
        axis=0,
    )  # (O, Na, Nz)
    _, pull = jax.vjp(lambda lam_: push(lam_, ap0, pi0, g, Pz), lam_ss)

    def ebody(E, _):
        return jax.vmap(lambda e: pull(e)[0])(E), E

    _, Es = jax.lax.scan(ebody, y, None, length=Tn)  # Es[t] = E_t
    F0 = jnp.transpose(dY, (2, 1, 0))  # (O, s, K)
    F1 = jnp.einsum("toaz,ksaz->tosk", Es[: Tn - 1], dD)
    F = jnp.concatenate([F0[None], F1], axis=0)  # (T, O, T, K)

    def jbody(Jprev, Ft):
        shifted = jnp.concatenate([jnp.zeros_like(Jprev[:, :1]), Jprev[:, :-1]], axis=1)
        J = Ft + shifted
        return J, J

    _, J = jax.lax.scan(jbody, jnp.zeros_like(F[0]), F)
    return J


def main():
    cal = sys.argv[1] if len(sys.argv) > 1 else "baseline"
    Tn = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    glob = len(sys.argv) > 3 and sys.argv[3] == "global"
    old = baseline_equilibrium(cal)
    sc = (
        Scenario(all_pairs=True, trade_cost_change=-0.1, allow_d_below_one=True)
        if glob
        else Scenario(importer="USA", trade_cost_change=-0.1, allow_d_below_one=True)
    )
    cf = run_counterfactual(old, sc)
    new = cf.new
    arrs = model_arrays(new.world, new.household, new.income)
    M = new.world.M
    w_ss = jnp.asarray(new.prices.w)
    R_ss = jnp.asarray(np.asarray(new.prices.R).ravel()[0])
    beta = jnp.asarray(new.prices.beta)
    x_ss = new.state
    lam_new = jnp.asarray(new.lam)
    lam0 = jnp.asarray(old.lam)
    N = np.asarray(new.aggregates["N"])
    Yss = jnp.asarray(np.asarray(w_ss) * N)
    print("R old new", old.prices.R, new.prices.R, "beta", float(beta))
    # check: steady state path has zero residual
    W0 = jnp.tile(w_ss, (Tn, 1))
    Rn0 = jnp.full(Tn, float(R_ss))
    t0 = time.time()
    H, V = residuals(arrs, W0, Rn0, R_ss, x_ss, w_ss, beta, lam_new, Yss)
    print("SS path residual", float(jnp.max(jnp.abs(H))), time.time() - t0)
    # Jacobian
    t0 = time.time()
    nU = M + 1
    JH = np.zeros((Tn, nU, Tn, nU))
    for i in range(M):
        ai = dict(
            d=arrs["d"][i],
            A=arrs["A"],
            t=arrs["t"][i],
            a_grid=arrs["a_grid"][i],
            Pz=arrs["Pz"],
            sigma=arrs["sigma"][i],
            psi=arrs["psi"][i],
            z=arrs["z"],
            i=i,
        )
        xi = HHState(jnp.asarray(x_ss.c[i]), jnp.asarray(x_ss.v[i]))
        J = np.asarray(
            fake_news_country(
                ai, xi, w_ss, R_ss, beta, lam_new[i], arrs["L"][i], arrs["gamma"], Tn + 1
            )
        )[:Tn]
        # J (t, o, s, k); o: M_i0..M_i,M-1, A'_i ; k: w_0..w_{M-1}, R_now
        Yn = np.asarray(Yss)
        JH[:, : M - 1, :, :M] += J[:, 1:M, :Tn, :M] / Yn[None, 1:, None, None]
        JH[:, M, :, :M] += J[:, M, :Tn, :M] / Yn.sum()
        # R at s (1..T) -> unknown Rn_{s-1}
        JH[:, : M - 1, :, M] += J[:, 1:M, 1:, M] / Yn[None, 1:, None]
        JH[:, M, :, M] += J[:, M, 1:, M] / Yn.sum()
        print(i, end=" ", flush=True)
    for t in range(Tn):
        for j in range(1, M):
            JH[t, j - 1, t, j] -= N[j] / Yn[j]
        JH[t, M - 1, t, :M] = 1.0 / M
    print("\nJacobian", time.time() - t0)
    JJ = JH.reshape(Tn * nU, Tn * nU)
    lu = sla.lu_factor(JJ)
    W = W0
    Rn = Rn0
    R0 = jnp.asarray(np.asarray(old.prices.R).ravel()[0])
    err = np.inf
    for it in range(30):
        H, V = residuals(arrs, W, Rn, R0, x_ss, w_ss, beta, lam0, Yss)
        err = float(jnp.max(jnp.abs(H)))
        print("it", it, "err %.3e" % err, flush=True)
        if err < 1e-10:
            break
        dU = sla.lu_solve(lu, -np.asarray(H).ravel()).reshape(Tn, nU)
        W = W + dU[:, :M]
        Rn = Rn + dU[:, M]
    ci = new.world.index("USA")
    print(
        "w_US path",
        np.round(np.asarray(W[:12, ci]) / float(old.prices.w[ci]), 4),
        "... new SS",
        float(w_ss[ci] / old.prices.w[ci]),
    )
    print("R path", np.round(np.asarray(Rn[:12]), 6))
    if err >= 1e-10:
        raise SystemExit(
            f"transition not converged: max excess demand {err:.2e} after {it + 1} "
            "Newton steps; try a longer horizon T"
        )
    # welfare
    ev_ss = Wf.equivalent_variation(old, new, "USA")
    mu0 = old.lam[ci]

    def summ(g, ok, tag):
        _, Wq = Wf.expenditure_quintiles(old, ci)
        g = np.where(ok, g, np.nan)
        print(
            tag,
            "mean %.3f" % (np.sum(mu0[ok] * g[ok]) / mu0[ok].sum()),
            "Q",
            np.round(Wf.group_means(g, Wq), 3),
        )

    summ(ev_ss.gain_percent, ev_ss.defined, "steady-state EV (all states)")
    ok = ev_ss.defined & ~ev_ss.nonmonotone  # the linearization needs dV/dlam > 0
    summ(ev_ss.gain_percent, ok, "steady-state EV (dV/dlam > 0)")
    # linear EV for the transition value using the same dV/dlam
    V0 = np.asarray(V[0][ci])
    dlin = (V0 - ev_ss.V_old) / ev_ss.dV_dlam
    summ(100 * dlin, ok, "transition EV (linearized)")
    summ(100 * (ev_ss.V_new - ev_ss.V_old) / ev_ss.dV_dlam, ok, "steady-state EV (linearized)")


if __name__ == "__main__":
    main()
