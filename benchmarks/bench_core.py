"""Speed benchmarks of the core solvers (issue 2): figures and ratios measured side by side.

Three sections, each selectable by a flag (default: all three, in this order)::

    python benchmarks/bench_core.py                      # everything (the equilibrium takes minutes)
    python benchmarks/bench_core.py --household-step     # EGM step vs the arithmetic floor
    python benchmarks/bench_core.py --one-good           # M = 1 vs sequence-jacobian
    python benchmarks/bench_core.py --equilibrium        # household solves to 1e-8
    python benchmarks/bench_core.py --json out.json      # also save the numbers + machine info

``--household-step``
    One EGM + value step (:func:`hatrade.core.household.egm_step`) for all 19 countries at the
    published baseline prices (Na=100, Nz=10, M=19), ``jax.jit(jax.vmap(egm_step))``, per
    country (time / 19), divided by the time of a jitted ``jnp.exp(x) + x ** g`` over an
    array of the same size (19*100*10*19 points; also / 19): the arithmetic floor. Target:
    ratio <= 3. Also: the per-step cost inside a compiled loop and inside a full cold solve
    (interleaved with the others), and a breakdown of the step (cumulative stages and parts
    timed alone).
``--one-good``
    The one-good limit (M = 1): hatrade's household steady state (fixed point to 1e-10 and
    stationary distribution by BiCGStab; the dense LU solve is timed too) against
    sequence-jacobian's one-asset household (its
    ``hh_sim`` EGM block, ``steady_state`` with backward_tol = forward_tol = 1e-10) on the
    same grid, income process and preferences. Target: hatrade no slower. The policies
    and distributions of the two are compared as a check that they solve the same problem.
``--equilibrium``
    The 19-country calibration equilibrium (18 wages + beta at R = 1.01) from
    ``initial-prices.csv`` to max excess demand < 1e-8, by default with hatrade's default
    solver (``broyden``: coarse stage and inexact household solves), the previous default
    (``broyden+nocoarse+exact``: neither) and ``newton`` (a full Jacobian at every iterate):
    world household solves, Jacobians (household-block Jacobians composed with the market
    maps) and their forward-mode directions, the coarse stage's solves and Jacobians (on
    its coarse grid), Newton iterations, wall time split into household solves, Jacobians
    and the coarse stage (JAX compilation done beforehand by solves from the published
    prices, and measured), and the cost in household-solve equivalents (solve time / one
    cold world household solve, to 1e-10 from the author's initial guess, timed in the same
    run). Target: <= 8.

Timing: every timed function is called once first (compilation excluded), results are
blocked on (``block_until_ready``); repeats of the things compared are interleaved, each
sample lasts about 0.2 s (the mean of as many calls as that takes, so that short and long
calls are disturbed alike by other processes), and both the minimum and the median are
printed. Ratios use the minima (robust to load from other
processes; the medians are printed too). Compare figures only within one run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import hatrade as ht
from hatrade.core.distribution import (
    iterate_distribution,
    stationary_distribution,
    stationary_distribution_info,
)
from hatrade.core.household import (
    HHState,
    _egm_interp,
    _marginal_and_utility,
    egm_step,
    initial_state,
    logit,
    policies,
    solve_fixed_point,
)
from hatrade.core.markets import country_params, model_arrays
from hatrade.data import INITIAL_BETA, load_calibration, load_initial_prices

jax.config.update("jax_enable_x64", True)  # this script only: hatrade computes in float64

TOL = 1e-10
R_ONE_GOOD = 1.01


# ----------------------------------------------------------------------------- helpers


def _block(x):
    return jax.block_until_ready(x)


def _timed(fn, *args):
    t = time.perf_counter()
    out = _block(fn(*args))
    return time.perf_counter() - t, out


def interleaved(fns: dict, repeats: int, sample_s: float = 0.2) -> dict:
    """Time zero-argument callables ``repeats`` times each, round-robin (after a warm call).

    Each sample is the mean of n consecutive calls, with n chosen per callable so that every
    sample lasts about ``sample_s`` seconds: under load from other processes a short call
    fits between interruptions more often than a long one, so minima of samples of unequal
    length would favour the short one. Returns name -> list of seconds per call.
    """
    number = {}
    for k, f in fns.items():
        _block(f())
        t = time.perf_counter()
        _block(f())
        number[k] = max(1, int(np.ceil(sample_s / max(time.perf_counter() - t, 1e-6))))
    out = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(number[k]):
                r = f()
            _block(r)
            out[k].append((time.perf_counter() - t) / number[k])
    return out


def _stats(ts) -> dict:
    return {"min_s": min(ts), "median_s": statistics.median(ts), "max_s": max(ts), "n": len(ts)}


def _us(s):
    return f"{s * 1e6:9.1f} us"


def _ms(s):
    return f"{s * 1e3:9.2f} ms"


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hatrade": ht.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "numpy": np.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": os.getloadavg(),
    }
    try:
        from importlib.metadata import version

        info["sequence_jacobian"] = version("sequence-jacobian")
        info["numba"] = version("numba")
    except Exception as err:  # noqa: BLE001 - optional packages
        info["sequence_jacobian"] = f"not installed ({err})"
    return info


def _print_header(info):
    print(
        f"hatrade {info['hatrade']}, jax {info['jax']} ({info['jax_backend']}), "
        f"numpy {info['numpy']}, Python {info['python']}"
    )
    print(
        f"{info['cpu']}, {info['cpus']} CPUs, load average {info['load_average_start'][0]:.1f} "
        f"(timings are noisy when it exceeds the CPU count)"
    )


def _baseline_world_params():
    """19 countries at the published baseline prices (w, R = 1.01, T = 0, beta)."""
    cal = load_calibration("baseline")
    world, hh = ht.ek_world("baseline"), ht.published_household("baseline")
    inc = ht.income_process(hh)
    arrs = model_arrays(world, hh, inc)
    M = world.M
    prm = country_params(
        arrs,
        jnp.asarray(cal.wages.values),
        jnp.full((M,), 1.01),
        jnp.zeros(M),
        jnp.asarray(cal.beta),
    )
    return prm, M


# ----------------------------------------------------------------------------- 1. step


def _step_stages(state: HHState, prm, upto: str):
    """A copy of :func:`hatrade.core.household.egm_step`, stopped after stage ``upto``.

    Stages: logit (pi, V from v), expectation (c^-gamma = exp(-gamma log c),
    m = sum_j pi c^-gamma / p, E = beta R m P'), endogenous_grid (p c~ = p^(1-1/gamma)
    exp(-log(E)/gamma), a~), interpolation (a'(a) on the grid as a fractional knot index),
    consumption (c = (cash - a')/p and u(c) = c c^-gamma/(1-gamma) from one log + one exp),
    value (u(c) + beta E V(a'), bracket from the interpolation) = the whole step. Each stage
    returns what the next needs (so nothing is dead code); ``value`` returns what
    ``egm_step`` returns and is checked against it.
    """
    c, v = state
    g = prm.gamma
    Na, Nz, M = v.shape
    inv_p = 1.0 / prm.p
    pi, V_old = logit(v, prm)
    if upto == "logit":
        return pi, V_old
    mu = jnp.exp(-g * jnp.log(c))
    m = jnp.sum(pi * mu * inv_p, axis=-1)
    E = (prm.beta * prm.R) * m @ prm.Pz.T
    if upto == "expectation":
        return E, V_old
    pc = jnp.exp((-1.0 / g) * jnp.log(E))[..., None] * (prm.p ** (1.0 - 1.0 / g))[None, None, :]
    income = prm.w * prm.z + prm.T
    a_tilde = (pc + (prm.a_grid[:, None] - income[None, :])[..., None]) * (1.0 / prm.R)
    if upto == "endogenous_grid":
        return a_tilde, V_old
    i, t, h = _egm_interp(a_tilde.reshape(Na, Nz * M), prm.a_grid)
    i, t = i.reshape(Na, Nz, M), t.reshape(Na, Nz, M)
    a_p = prm.a_grid[0] + h * ((i - 1).astype(t.dtype) + t)
    if upto == "interpolation":
        return a_p, i, t, V_old
    cash = prm.R * prm.a_grid[:, None] + income[None, :]
    c_new = (cash[..., None] - a_p) * inv_p
    _, u = _marginal_and_utility(c_new, g)
    if upto == "consumption":
        return c_new, u, a_p, i, t, V_old
    W = (V_old @ prm.Pz.T).ravel()
    zi = jnp.arange(Nz)[None, :, None]
    w0 = W[(i - 1) * Nz + zi]
    w1 = W[i * Nz + zi]
    v_new = u + prm.beta * (w0 + t * (w1 - w0))
    return HHState(c_new, v_new), a_p


STAGES = ["logit", "expectation", "endogenous_grid", "interpolation", "consumption", "value"]
STAGE_TEXT = {
    "logit": "softmax over j of (psi+v)/sigma, log-sum V   [1 exp/pt]",
    "expectation": "m = sum_j pi e^(-g log c) / p; E = b R m P' [1 log + 1 exp/pt]",
    "endogenous_grid": "p c~ = p^(1-1/g) E^(-1/g), a~  [Na*Nz log+exp, M powers]",
    "interpolation": "a'(a) = a0 + h (i-1+t): 1 flat histogram + scan + 2 gathers",
    "consumption": "c = (cash - a')/p; u = c e^(-g log c)/(1-g) [1 log + 1 exp/pt]",
    "value": "W = V P'; u + beta ((1-t) W[i-1] + t W[i])   [2 gathers/pt]",
}


def bench_household_step(repeats: int) -> dict:
    print(
        "\n=== 1. Household step: Na=100, Nz=10, M=19, 19 countries vmapped, published prices ==="
    )
    prm, M = _baseline_world_params()
    Na, Nz = prm.a_grid.shape[1], prm.z.shape[1]
    npts = M * Na * Nz * M

    step = jax.jit(jax.vmap(egm_step))
    x = jax.vmap(initial_state)(prm)
    for _ in range(30):  # a state in the middle of an iteration, not the flat initial guess
        x, _ = step(x, prm)
    x = _block(x)

    # the arithmetic floor: one exp and one power per point, same number of points
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.uniform(0.5, 2.0, size=(M, Na, Nz, M)))
    gexp = jnp.asarray(-1.0 / 1.45)
    floor = jax.jit(lambda a, g: jnp.exp(a) + a**g)

    # the step inside a compiled loop (no dispatch, buffers reused): 20 steps per call
    n_loop = 20

    @jax.jit
    def loop(x, prm):
        return jax.lax.fori_loop(0, n_loop, lambda i, s: jax.vmap(egm_step)(s, prm)[0], x)

    # a full cold solve: time / (max iterations over countries) / 19 (vmapped while_loop:
    # every country steps until the slowest has converged); interleaved with the others
    cold = jax.jit(jax.vmap(lambda p: solve_fixed_point(p, initial_state(p), TOL, 3000)))
    _, (_, its) = _timed(cold, prm)
    max_it = int(np.max(np.asarray(its)))

    t = interleaved(
        {
            "step": lambda: step(x, prm),
            "floor": lambda: floor(xs, gexp),
            "loop": lambda: loop(x, prm),
            "cold": lambda: cold(prm),
        },
        repeats=repeats,
    )
    st = {k: _stats(v) for k, v in t.items()}
    ts_cold = t["cold"]
    per_c = {k: {q: st[k][q] / M for q in ("min_s", "median_s")} for k in ("step", "floor")}
    per_c["loop"] = {q: st["loop"][q] / M / n_loop for q in ("min_s", "median_s")}
    per_c["in_solve"] = {q: st["cold"][q] / max_it / M for q in ("min_s", "median_s")}

    ratio = per_c["step"]["min_s"] / per_c["floor"]["min_s"]
    ratio_med = per_c["step"]["median_s"] / per_c["floor"]["median_s"]
    print(
        f"points per call: {npts} (= 19 countries x {Na} x {Nz} x {M}); {repeats} interleaved "
        "samples of about 0.2 s each (the mean of as many calls); per country = / 19"
    )
    print(f"{'':38s}{'min':>12s}{'median':>13s}")
    print(
        f"{'EGM step, jit(vmap(egm_step)), /country':38s}{_us(per_c['step']['min_s'])}"
        f"{_us(per_c['step']['median_s'])}"
    )
    print(
        f"{'floor: exp(x) + x**g, same points /19':38s}{_us(per_c['floor']['min_s'])}"
        f"{_us(per_c['floor']['median_s'])}"
    )
    print(
        f"{'step inside fori_loop (20 steps)':38s}{_us(per_c['loop']['min_s'])}"
        f"{_us(per_c['loop']['median_s'])}"
    )
    print(
        f"{'step inside a cold solve (' + str(max_it) + ' its)':38s}"
        f"{_us(per_c['in_solve']['min_s'])}{_us(per_c['in_solve']['median_s'])}  "
        "(incl. convergence check + level correction)"
    )
    print(f"RATIO step / floor = {ratio:.2f} (minima), {ratio_med:.2f} (medians); target <= 3")
    print(
        f"      in-loop step / floor = {per_c['loop']['min_s'] / per_c['floor']['min_s']:.2f}, "
        f"in-solve step / floor = {per_c['in_solve']['min_s'] / per_c['floor']['min_s']:.2f} "
        "(minima)"
    )

    # ---- breakdown
    ref = step(x, prm)
    mirror = jax.jit(jax.vmap(partial(_step_stages, upto="value")))(x, prm)
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(mirror))
    )
    if diff > 1e-12:
        print(
            f"WARNING: the breakdown's copy of egm_step differs from egm_step by {diff:.1e}; "
            "egm_step has changed, update _step_stages"
        )
    stage_fns = {s: jax.jit(jax.vmap(partial(_step_stages, upto=s))) for s in STAGES}
    # inputs of the parts timed alone
    a_tilde, V_old = jax.jit(jax.vmap(partial(_step_stages, upto="endogenous_grid")))(x, prm)
    c_new, u_new, _, i_b, t_b, _ = jax.jit(jax.vmap(partial(_step_stages, upto="consumption")))(
        x, prm
    )

    def _interp_only(a_tilde, a_grid):
        Na = a_grid.shape[0]
        i, t, h = _egm_interp(a_tilde.reshape(Na, -1), a_grid)
        return a_grid[0] + h * ((i - 1).astype(t.dtype) + t)

    def _value_no_u(u, i, t, V_old, prm):
        Nz = V_old.shape[1]
        W = (V_old @ prm.Pz.T).ravel()
        zi = jnp.arange(Nz)[None, :, None]
        w0, w1 = W[(i - 1) * Nz + zi], W[i * Nz + zi]
        return u + prm.beta * (w0 + t * (w1 - w0))

    parts = {
        "logit alone": (jax.jit(jax.vmap(logit)), (x.v, prm)),
        "c^-g = exp(-g log c) alone": (
            jax.jit(jax.vmap(lambda c, g: jnp.exp(-g * jnp.log(c)))),
            (x.c, prm.gamma),
        ),
        "c^-g and u(c), log + exp, alone": (
            jax.jit(jax.vmap(_marginal_and_utility)),
            (c_new, prm.gamma),
        ),
        "interpolation alone": (jax.jit(jax.vmap(_interp_only)), (a_tilde, prm.a_grid)),
        "value update given u alone": (
            jax.jit(jax.vmap(_value_no_u)),
            (u_new, i_b, t_b, V_old, prm),
        ),
    }
    fns = {f"stage:{s}": (lambda f=f: f(x, prm)) for s, f in stage_fns.items()}
    fns.update({k: (lambda f=f, a=a: f(*a)) for k, (f, a) in parts.items()})
    fns["floor"] = lambda: floor(xs, gexp)
    tb = interleaved(fns, repeats=repeats)
    fl = min(tb["floor"]) / M
    print(
        "\nBreakdown of one step (per country, minima; cumulative = the step stopped after "
        "that stage, marginal = difference):"
    )
    print(f"{'stage':17s}{'cumulative':>13s}{'marginal':>13s}{'x floor':>9s}  what")
    prev, rows = 0.0, []
    for s in STAGES:
        cum = min(tb[f"stage:{s}"]) / M
        marg = cum - prev
        rows.append(
            {"stage": s, "cumulative_s": cum, "marginal_s": marg, "marginal_x_floor": marg / fl}
        )
        print(f"{s:17s}{_us(cum)}   {_us(marg)}{marg / fl:8.2f}  {STAGE_TEXT[s]}")
        prev = cum
    print(f"{'parts timed alone':30s}")
    alone = {}
    for k in parts:
        tk = min(tb[k]) / M
        alone[k] = tk
        print(f"  {k:32s}{_us(tk)}{tk / fl:8.2f} x floor")
    print(f"  {'floor (exp + pow)':32s}{_us(fl)}    1.00")
    print(
        "Transcendentals per (a, z, j) point in egm_step: 1 exp (logit) + 2 x (1 log + 1 exp) "
        "(c^-gamma of the current c; c^-gamma and u of the new c); the floor is 1 exp + 1 power "
        "(a power costs about a log + an exp)."
    )

    return {
        "points": npts,
        "countries": M,
        "Na": Na,
        "Nz": Nz,
        "per_country_s": per_c,
        "ratio_step_over_floor_min": ratio,
        "ratio_step_over_floor_median": ratio_med,
        "target": 3.0,
        "cold_solve_iterations_max": max_it,
        "cold_solve_s": _stats(ts_cold),
        "breakdown_cumulative": rows,
        "breakdown_alone_s": alone,
        "breakdown_floor_s": fl,
        "mirror_max_abs_diff": diff,
    }


# ----------------------------------------------------------------------------- 2. one good


def _ssj_blocks():
    """sequence-jacobian's one-asset household, as shipped and as the same problem as hatrade.

    ``hh_sim.hh`` (EGM on the marginal value Va; u'(c) = beta R E Va'; a'(a) by linear
    interpolation in cash on hand, *linear* extrapolation on both sides, then a' >= a_min).
    hatrade extrapolates flat above the top of the endogenous grid (a' <= a_max), so
    ``capped`` adds that one line; both start from hatrade's initial guess (a' = a_min:
    c = R a + y - a_min). The shipped block's own initial guess, (0.1 coh)^(-1/eis), is NaN
    where cash on hand is negative (a < 0 with low income), so it is replaced.
    """
    import sequence_jacobian as sj
    from sequence_jacobian import interpolate as sj_interp
    from sequence_jacobian import misc as sj_misc
    from sequence_jacobian.hetblocks.hh_sim import hh as hh_shipped

    def hh_init_limit(a_grid, y, r, eis):
        coh = (1 + r) * a_grid[np.newaxis, :] + y[:, np.newaxis]
        Va = (1 + r) * (coh - a_grid[0]) ** (-1 / eis)
        return Va

    def hh_capped(Va_p, a_grid, y, r, beta, eis):
        uc_nextgrid = beta * Va_p
        c_nextgrid = uc_nextgrid ** (-eis)
        coh = (1 + r) * a_grid[np.newaxis, :] + y[:, np.newaxis]
        a = sj_interp.interpolate_y(c_nextgrid + a_grid, coh, a_grid)
        sj_misc.setmin(a, a_grid[0])
        a = np.minimum(a, a_grid[-1])  # the one change: flat extrapolation at the top
        c = coh - a
        Va = (1 + r) * c ** (-1 / eis)
        return Va, a, c

    het = partial(sj.het, exogenous="Pi", policy="a", backward="Va", backward_init=hh_init_limit)
    return {"shipped": het()(hh_shipped.backward_fun.f), "capped": het()(hh_capped)}


def _c_only_fixed_point(prm, x0, tol, max_iter):
    """The author's rule: iterate egm_step until max|dc| < tol (v not checked, no correction)."""

    def cond(carry):
        _, it, err = carry
        return (it < max_iter) & (err >= tol)

    def body(carry):
        x, it, _ = carry
        x1, _ = egm_step(x, prm)
        return x1, it + 1, jnp.max(jnp.abs(x1.c - x.c))

    x, it, _ = jax.lax.while_loop(cond, body, (x0, jnp.array(0), jnp.array(jnp.inf)))
    return x, it


def bench_one_good(repeats: int) -> dict:
    print("\n=== 2. One-good limit (M = 1): household steady state vs sequence-jacobian ===")
    try:
        blocks = _ssj_blocks()
    except ImportError as err:
        print(
            f"sequence-jacobian is not installed ({err}); pip install -r benchmarks/requirements.txt"
        )
        return {"skipped": str(err)}
    gamma, beta, R = 1.45, 0.93, R_ONE_GOOD
    hh = ht.Household(gamma=gamma, sigma_eps=0.33, psi_slope=0.0, beta=beta)
    world = ht.World(countries=["A"], tfp=[1.0], labor=[1.0], d=[[1.0]])
    inc = ht.income_process(hh)
    arrs = model_arrays(world, hh, inc)
    prm = country_params(arrs, jnp.ones(1), jnp.asarray(R), jnp.zeros(1), jnp.asarray(beta))
    prm = jax.tree.map(lambda a: a[0], prm)  # one country
    a_grid = np.asarray(prm.a_grid)
    print(
        f"grid: {a_grid.size} points linear on [{a_grid[0]}, {a_grid[-1]}], income "
        f"Rouwenhorst {hh.n_perm}x{hh.n_iid} (mean {float(inc.dist @ inc.z):.6f}), gamma={gamma}, "
        f"beta={beta}, R={R}, w=1, psi=0 (sigma irrelevant at M=1); tol {TOL:g}"
    )

    def _ht(fixed_point, dist="krylov"):
        def f(prm):
            x, it = fixed_point(prm, initial_state(prm), TOL, 3000)
            pol = policies(x, prm)
            if dist == "iterate":
                lam = iterate_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz, tol=TOL)[0]
            else:  # "krylov" (the default) or "direct" (dense LU)
                lam = stationary_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz, method=dist)
            return pol, lam, it

        return jax.jit(f)

    ht_default = _ht(solve_fixed_point)  # c and v converged (hatrade's rule), Krylov
    ht_c_only = _ht(_c_only_fixed_point)  # the author's rule (c only)
    ht_lu = _ht(solve_fixed_point, dist="direct")  # the dense LU distribution (before)
    ht_iter = _ht(solve_fixed_point, dist="iterate")  # forward iteration
    fp_only = jax.jit(lambda p: solve_fixed_point(p, initial_state(p), TOL, 3000))
    pol, lam, its = _block(ht_default(prm))
    its_c = int(_block(ht_c_only(prm))[2])
    lam_lu = _block(ht_lu(prm))[1]
    dist_only = jax.jit(
        lambda pol, prm: stationary_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    )
    dist_lu = jax.jit(
        lambda pol, prm: stationary_distribution(
            pol.a_p, pol.pi, prm.a_grid, prm.Pz, method="direct"
        )
    )
    _, dinfo = stationary_distribution_info(pol.a_p, pol.pi, prm.a_grid, prm.Pz)

    cal = {
        "Pi": np.asarray(inc.P),
        "a_grid": a_grid,
        "y": np.asarray(inc.z),
        "r": R - 1.0,
        "beta": beta,
        "eis": 1.0 / gamma,
    }
    ssj = {
        k: (lambda b=b: b.steady_state(cal, backward_tol=TOL, forward_tol=TOL))
        for k, b in blocks.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ss = {k: f() for k, f in ssj.items()}  # also warms numba
        t = interleaved(
            {
                "hatrade (c and v, Krylov distribution)": lambda: ht_default(prm),
                "hatrade (c only, Krylov distribution)": lambda: ht_c_only(prm),
                "hatrade (c and v, dense LU distribution)": lambda: ht_lu(prm),
                "hatrade (c and v, iterated distribution)": lambda: ht_iter(prm),
                "hatrade fixed point only": lambda: fp_only(prm),
                "hatrade distribution only (Krylov)": lambda: dist_only(pol, prm),
                "hatrade distribution only (dense LU)": lambda: dist_lu(pol, prm),
                "sequence-jacobian (same problem)": ssj["capped"],
                "sequence-jacobian (shipped hh_sim)": ssj["shipped"],
            },
            repeats=repeats,
        )

    # sanity: the same problem (policies on the grid, distributions at decision time)
    a_ht, c_ht, lam_ht = (
        np.asarray(pol.a_p[:, :, 0]).T,
        np.asarray(pol.c[:, :, 0]).T,
        np.asarray(lam).T,
    )
    checks = {}
    for k, s in ss.items():
        d = s.internals[next(iter(s.internals))]
        checks[k] = {
            "max_abs_diff_a": float(np.max(np.abs(d["a"] - a_ht))),
            "max_abs_diff_c": float(np.max(np.abs(d["c"] - c_ht))),
            "max_abs_diff_D": float(np.max(np.abs(d["D"] - lam_ht))),
            "aggregate_A_ssj": float(s["A"]),
            "aggregate_A_hatrade": float(np.sum(lam_ht * a_ht)),
        }
        d_top = np.abs(d["a"] - a_ht)[:, :-1]
        checks[k]["max_abs_diff_a_below_top"] = float(np.max(d_top))
    st = {k: _stats(v) for k, v in t.items()}
    base = st["sequence-jacobian (same problem)"]["min_s"]
    print(
        f"hatrade: {int(its)} EGM steps to {TOL:g} in c and v (with level correction); "
        f"{its_c} steps with the author's c-only rule; distribution: {int(dinfo.iterations)} "
        f"BiCGStab iterations, residual {float(dinfo.residual):.1e}, max |Krylov - LU| "
        f"{float(jnp.max(jnp.abs(lam - lam_lu))):.1e}"
    )
    print(f"{repeats} interleaved repeats{'':22s}{'min':>12s}{'median':>13s}   min / ssj")
    for k, v in st.items():
        print(f"  {k:44s}{_ms(v['min_s'])}{_ms(v['median_s'])}   {v['min_s'] / base:7.2f}")
    dflt = "hatrade (c and v, Krylov distribution)"
    ratio = st[dflt]["min_s"] / base
    print(
        f"RATIO hatrade (default) / sequence-jacobian = {ratio:.2f} (minima), "
        f"{st[dflt]['median_s'] / st['sequence-jacobian (same problem)']['median_s']:.2f}"
        " (medians); target <= 1"
    )
    print("Same problem? max |difference| hatrade vs sequence-jacobian:")
    for k, c in checks.items():
        print(
            f"  {k:9s}: a' {c['max_abs_diff_a']:.1e} (below the top grid point "
            f"{c['max_abs_diff_a_below_top']:.1e}), c {c['max_abs_diff_c']:.1e}, "
            f"distribution {c['max_abs_diff_D']:.1e}; mean assets {c['aggregate_A_ssj']:.10f} vs "
            f"{c['aggregate_A_hatrade']:.10f}"
        )
    print(
        "  (the shipped block extrapolates a'(a) linearly above the grid's top (a' up to "
        f"{float(np.max(ss['shipped'].internals[next(iter(ss['shipped'].internals))]['a'])):.3f} > "
        f"a_max = {a_grid[-1]}), hatrade caps a' at a_max: the policies differ near the top\n"
        "   of the grid for high incomes and, through expectations, below it; with the cap "
        "they agree to the tolerance)"
    )
    return {
        "timings": st,
        "ratio_hatrade_over_ssj_min": ratio,
        "target": 1.0,
        "hatrade_iterations_c_and_v": int(its),
        "hatrade_iterations_c_only": its_c,
        "distribution_iterations": int(dinfo.iterations),
        "distribution_residual": float(dinfo.residual),
        "max_abs_diff_krylov_lu": float(jnp.max(jnp.abs(lam - lam_lu))),
        "checks": checks,
    }


# ----------------------------------------------------------------------------- 3. equilibrium


class _CompileClock:
    """Sums JAX tracing + lowering + XLA compilation time (jax.monitoring events)."""

    EVENTS = (
        "/jax/core/compile/backend_compile_duration",
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
    )

    def __init__(self):
        self.total = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kwargs):
        if event in self.EVENTS:
            self.total += duration


def bench_equilibrium(methods, rounds: int = 2) -> dict:
    from hatrade.core.markets import Layout, initial_states
    from hatrade.solve.newton import residual as _residual

    print("\n=== 3. Equilibrium: 18 wages + beta at R = 1.01, from initial-prices.csv to 1e-8 ===")
    clock = _CompileClock()
    world, hh = ht.ek_world("baseline"), ht.published_household("baseline")
    inc = ht.income_process(hh)
    arrs = model_arrays(world, hh, inc)
    w0 = load_initial_prices().values
    M = world.M
    layout = Layout(
        M=M,
        financial="globalization",
        solve_for="beta",
        tariffs=False,
        R_fixed=1.01,
        beta_fixed=None,
    )
    u0 = jnp.asarray(layout.pack(w0 / w0.mean(), 1.01, np.zeros(M), INITIAL_BETA))

    def cold_solve():
        w, Rv, Tv, b = layout.prices(u0)
        x = initial_states(arrs, w, Rv, Tv, b)
        return _residual(u0, x, arrs, layout, 1e-10, 3000)[0]

    t0 = time.perf_counter()
    r0 = _block(cold_solve())
    print(
        f"first world household solve (with compilation): {time.perf_counter() - t0:.1f} s; "
        f"max excess demand at the initial prices {float(jnp.max(jnp.abs(r0))):.2e}"
    )
    ts = []
    for _ in range(3):
        dt, _ = _timed(cold_solve)
        ts.append(dt)
    t_hh = min(ts)
    print(
        f"one cold world household solve (19 countries + distributions + aggregates): "
        f"min {t_hh:.2f} s, median {statistics.median(ts):.2f} s"
    )
    out = {"cold_world_solve_s": _stats(ts), "target_household_solves": 8, "methods": {}}
    # what an inexact household solve costs and how far it moves the excess demands
    w, Rv, Tv, b = layout.prices(u0)
    x0 = initial_states(arrs, w, Rv, Tv, b)
    r_ex, (_, sol_ex) = _residual(u0, x0, arrs, layout, 1e-10, 3000)
    out["inexact"] = []
    print(
        "household tolerance -> EGM iterations (most in a country) and max |excess demand "
        "- exact| at the initial prices, same start:"
    )
    print(f"  1e-10: {int(np.max(np.asarray(sol_ex['iterations'])))} iterations (exact)")
    for t in (1e-3, 1e-5, 1e-7):
        r_t, (_, sol_t) = _residual(u0, x0, arrs, layout, 1e-10, 3000, t)
        its, dev = int(np.max(np.asarray(sol_t["iterations"]))), float(jnp.max(jnp.abs(r_t - r_ex)))
        out["inexact"].append({"tol": t, "iterations": its, "max_abs_error": dev})
        print(f"  {t:.0e}: {its} iterations, error {dev:.1e}")
    # compile everything the solves use (same shapes and static arguments) before timing:
    # near the published equilibrium this takes one Jacobian and a step or two
    cal = load_calibration("baseline")
    c0, t0 = clock.total, time.perf_counter()
    ht.solve_equilibrium(
        world,
        hh,
        solve_for="beta",
        R=1.01,
        wages=cal.wages.values,
        beta_guess=cal.beta * (1 + 1e-5),
        tol=1e-8,
        method="newton",
    )
    # and the coarse stage's (coarse grid) functions: the default solve from the initial
    # prices, untimed
    ht.solve_equilibrium(
        world, hh, solve_for="beta", R=1.01, wages=w0, beta_guess=INITIAL_BETA, tol=1e-8
    )
    print(
        f"compilation runs (newton from the published prices, the default from the initial "
        f"prices): {time.perf_counter() - t0:.1f} s, of which JAX compilation "
        f"{clock.total - c0:.1f} s"
    )
    for rnd, spec in ((r, m) for r in range(rounds) for m in methods):
        # "method[@jac_tol][+nocoarse][+exact]"; every round runs every solver (interleaved:
        # the load moves), the fastest run of each is kept
        head, *flags = spec.split("+")
        method, _, jt = head.partition("@")
        unknown = set(flags) - {"nocoarse", "exact"}
        if unknown:
            raise SystemExit(
                f"unknown solver flag(s) {sorted(unknown)} in {spec!r}: use +nocoarse and/or +exact"
            )
        kw = {"jac_tol": float(jt)} if jt else {}
        if "nocoarse" in flags:
            kw["coarse_n_a"] = None
        if "exact" in flags:
            kw["inexact"] = 0.0
        c0 = clock.total
        t0 = time.perf_counter()
        eq = ht.solve_equilibrium(
            world,
            hh,
            solve_for="beta",
            R=1.01,
            wages=w0,
            beta_guess=INITIAL_BETA,
            tol=1e-8,
            method=method,
            **kw,
        )
        wall = time.perf_counter() - t0
        comp = clock.total - c0
        res = {
            "household_solves": eq.household_solves,
            "jacobians": eq.jacobians,
            "jacobian_directions": eq.jacobian_directions,
            "coarse_household_solves": eq.coarse_household_solves,
            "coarse_jacobians": eq.coarse_jacobians,
            "newton_iterations": eq.iterations,
            "residual": eq.residual,
            "history": eq.history,
            "beta": eq.beta,
            "wall_s": wall,
            "compile_s": comp,
            "household_s": eq.seconds_household,
            "jacobian_s": eq.seconds_jacobian,
            "coarse_s": eq.seconds_coarse,
            "equivalents_wall": wall / t_hh,
            "equivalents_excl_compile": (wall - comp) / t_hh,
            "equivalents_household": eq.seconds_household / t_hh,
            "equivalents_jacobian": eq.seconds_jacobian / t_hh,
            "equivalents_coarse": eq.seconds_coarse / t_hh,
        }
        best = out["methods"].get(spec)
        res["runs_wall_s"] = (best["runs_wall_s"] if best else []) + [wall]
        if best is None or wall < best["wall_s"]:
            out["methods"][spec] = res
        else:
            best["runs_wall_s"] = res["runs_wall_s"]
        print(
            f"\n[round {rnd + 1}/{rounds}] {spec}: converged, max excess demand {eq.residual:.1e}, beta {eq.beta:.9f}"
        )
        print(
            f"  household_solves (primal world solves, full grid) {eq.household_solves}, "
            f"Jacobians {eq.jacobians} ({eq.jacobian_directions} forward directions in all), "
            f"Newton iterations {eq.iterations}"
        )
        print(
            f"  coarse stage: {eq.coarse_household_solves} world household solves and "
            f"{eq.coarse_jacobians} Jacobians on the coarse grid, {eq.seconds_coarse:.1f} s"
        )
        print(f"  history: {', '.join(f'{h:.1e}' for h in eq.history)}")
        print(
            f"  wall time {wall:.1f} s (household solves {eq.seconds_household:.1f} s, "
            f"Jacobians {eq.seconds_jacobian:.1f} s, coarse stage {eq.seconds_coarse:.1f} s), "
            f"of which JAX compilation {comp:.1f} s"
        )
        print(
            f"  COST = {wall / t_hh:.1f} household-solve equivalents (wall; household solves "
            f"{eq.seconds_household / t_hh:.1f}, Jacobians {eq.seconds_jacobian / t_hh:.1f}, "
            f"coarse stage {eq.seconds_coarse / t_hh:.1f}), {(wall - comp) / t_hh:.1f} "
            f"excluding compilation; target <= 8"
        )
        for _ in range(2):  # the unit again, between the solvers (the load moves)
            dt, _ = _timed(cold_solve)
            ts.append(dt)
    # summary on one unit: the fastest cold solve of the whole run (the most demanding unit)
    t_min = min(ts)
    out["cold_world_solve_s"] = _stats(ts)
    out["unit_s"] = t_min
    print(
        f"\nsummary: one cold world household solve, min of {len(ts)} samples taken before "
        f"and between the solvers: {t_min:.2f} s (median {statistics.median(ts):.2f} s)"
    )
    print(f"fastest of {rounds} round(s) per solver:")
    print(
        f"{'solver':<28} {'solves':>6} {'Jacobians':>9} {'coarse':>12} {'wall s':>7} "
        f"{'equivalents':>11}"
    )
    for spec, res in out["methods"].items():
        res["equivalents_min_unit"] = (res["wall_s"] - res["compile_s"]) / t_min
        coarse = f"{res['coarse_household_solves']}+{res['coarse_jacobians']}J"
        print(
            f"{spec:<28} {res['household_solves']:>6} {res['jacobians']:>9} {coarse:>12} "
            f"{res['wall_s']:>7.1f} {res['equivalents_min_unit']:>11.1f}"
        )
    print("(equivalents: wall time excluding compilation / that cold solve; target <= 8)")
    return out


# ----------------------------------------------------------------------------- main


def _write_json(path, data):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(
            data, fh, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
        )
    os.replace(tmp, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--household-step", action="store_true", help="section 1 only (combinable)")
    ap.add_argument("--one-good", action="store_true", help="section 2 only (combinable)")
    ap.add_argument("--equilibrium", action="store_true", help="section 3 only (combinable)")
    ap.add_argument(
        "--methods",
        default="broyden,broyden+nocoarse+exact,newton",
        help="equilibrium solvers, comma separated (default "
        "broyden,broyden+nocoarse+exact,newton): METHOD[@TOL][+nocoarse]"
        "[+exact]; @TOL sets the Jacobian's tangent tolerance (jac_tol), "
        "+nocoarse turns the coarse stage off (coarse_n_a=None), +exact the "
        "inexact household solves (every solve to 1e-10)",
    )
    ap.add_argument("--repeats", type=int, default=20, help="timing samples (default 20)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="equilibrium: rounds of all solvers, the fastest run of each is kept (default 2)",
    )
    ap.add_argument("--json", metavar="FILE", help="save the numbers and machine info as JSON")
    args = ap.parse_args(argv)
    chosen = [k for k in ("household_step", "one_good", "equilibrium") if getattr(args, k)]
    if not chosen:
        chosen = ["household_step", "one_good", "equilibrium"]

    info = machine_info()
    _print_header(info)
    results = {"machine": info, "argv": sys.argv[1:]}
    if "household_step" in chosen:
        results["household_step"] = bench_household_step(args.repeats)
    if "one_good" in chosen:
        results["one_good"] = bench_one_good(args.repeats)
    if "equilibrium" in chosen:
        results["equilibrium"] = bench_equilibrium(
            [m.strip() for m in args.methods.split(",")], args.rounds
        )
    info["load_average_end"] = os.getloadavg()
    print(f"\nload average at the end: {info['load_average_end'][0]:.1f} ({info['cpus']} CPUs)")
    if args.json:
        _write_json(args.json, results)
        print(f"numbers saved to {args.json}")


if __name__ == "__main__":
    main()
