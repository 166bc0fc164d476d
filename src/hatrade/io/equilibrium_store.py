r"""Equilibria in the results cache: stored whole, rebuilt checked.

An :class:`~hatrade.solve.equilibrium.Equilibrium` is stored as arrays and metadata
(:func:`equilibrium_to_arrays`) under the key of its inputs (:func:`equilibrium_inputs`:
the world, household, income process and the solve options that determine it), and
rebuilt for a given world and household (:func:`equilibrium_from_arrays`).
:func:`cached_equilibrium` loads it, or solves and stores it.

Stored whole: prices, policies, distributions, aggregates, the warm-start state, the
diagnostics (including ``jacobian_directions``, ``seconds_household`` and
``seconds_jacobian``) and the labeled Jacobian
(:class:`~hatrade.solve.equilibrium.EquilibriumJacobian`: its matrix in the ``.npz``, its
unknowns and residual names in the metadata, checked on load against the layouts the world
allows). The metadata carries :data:`EQUILIBRIUM_CONTENT`; an entry without it (written
before the Jacobian labels and these fields were stored) is **stale**: it is removed and
recomputed (logged at INFO, counted as ``stale:<kind>``), never loaded with made-up
defaults, so a loaded equilibrium always has its true diagnostics and a Jacobian that a
later solve can check.

Every byte of an entry, the metadata (beta, convergence flags, counts) as well as the
arrays, is verified by the cache (:mod:`hatrade.io.cache`) before it is rebuilt; the rebuild
then checks that it fits the world and household and that every scalar has its type.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from hatrade.io.cache import Cache, CacheError, StaleEntry

__all__ = [
    "EQUILIBRIUM_CONTENT",
    "equilibrium_inputs",
    "equilibrium_to_arrays",
    "equilibrium_from_arrays",
    "cached_equilibrium",
]

_POLICY_FIELDS = ("c", "a_p", "v", "pi", "V")

#: Version of an equilibrium entry's contents (in its metadata as ``"content"``). 2: the
#: Jacobian's labels, ``jacobian_directions``, ``seconds_household``, ``seconds_jacobian``.
#: Entries of another version are stale (:class:`StaleEntry`) and recomputed.
EQUILIBRIUM_CONTENT = 2


def equilibrium_inputs(world, household, income=None, **options) -> dict:
    """The inputs that determine an equilibrium: primitives and solve options.

    ``options`` are what the solver holds fixed and how precisely it solves: e.g.
    ``solve_for``, ``R`` (when solving for beta), ``beta`` (when solving for R), ``tol``,
    ``hh_tol``. Starting points and warm starts are deliberately left out.
    """
    from hatrade.core.income import income_process

    inc = income or income_process(household)
    return {
        "world": world,
        "household": household,
        "income": {"z": inc.z, "P": inc.P, "log_z_perm": inc.log_z_perm},
        "options": options,
    }


def equilibrium_to_arrays(eq) -> tuple[dict, dict]:
    """An :class:`~hatrade.solve.equilibrium.Equilibrium` as arrays and metadata (everything but the
    world, household and income process, which are the key's inputs): the Jacobian's
    matrix in ``jacobian``, its labels in the metadata ``jacobian_labels`` (None for an
    unlabeled array), the contents version :data:`EQUILIBRIUM_CONTENT`."""
    from hatrade.solve.equilibrium import EquilibriumJacobian

    arrays = {
        "w": np.asarray(eq.prices.w, float),
        "R": np.asarray(eq.prices.R, float),
        "T": np.asarray(eq.prices.T, float),
        "p": np.asarray(eq.p, float),
        "lam": np.asarray(eq.lam, float),
        "a_grid": np.asarray(eq.a_grid, float),
        "state_c": np.asarray(eq.state.c, float),
        "state_v": np.asarray(eq.state.v, float),
    }
    for f in _POLICY_FIELDS:
        arrays[f"pol_{f}"] = np.asarray(getattr(eq.policies, f), float)
    for k, v in eq.aggregates.items():
        arrays[f"agg_{k}"] = np.asarray(v, float)
    if eq.hh_iterations is not None:
        arrays["hh_iterations"] = np.asarray(eq.hh_iterations)
    labels = None
    if eq.jacobian is not None:
        arrays["jacobian"] = np.asarray(eq.jacobian, float)
        if isinstance(eq.jacobian, EquilibriumJacobian):
            labels = {
                "unknowns": [str(x) for x in eq.jacobian.unknowns],
                "residuals": [str(x) for x in eq.jacobian.residuals],
            }
    meta = {
        "content": EQUILIBRIUM_CONTENT,
        "beta": float(eq.prices.beta),
        "converged": bool(eq.converged),
        "iterations": int(eq.iterations),
        "residual": float(eq.residual),
        "household_solves": int(eq.household_solves),
        "jacobians": int(eq.jacobians),
        "jacobian_directions": int(eq.jacobian_directions),
        "jacobian_labels": labels,
        "history": [float(h) for h in eq.history],
        "seconds": float(eq.seconds),
        "seconds_household": float(eq.seconds_household),
        "seconds_jacobian": float(eq.seconds_jacobian),
        "countries": list(eq.countries),
        "aggregates": sorted(eq.aggregates),
    }
    return arrays, meta


#: The scalar metadata of an equilibrium entry and their types (checked on load).
_META_TYPES = {
    "beta": float,
    "converged": bool,
    "iterations": int,
    "residual": float,
    "household_solves": int,
    "jacobians": int,
    "jacobian_directions": int,
    "seconds": float,
    "seconds_household": float,
    "seconds_jacobian": float,
}


def _check_meta(meta: dict) -> None:
    """Raise CacheError unless every scalar of ``meta`` has its type (a bool is not a
    number) and beta is finite and positive. The cache has verified the bytes; this
    refuses what no solve writes."""
    for name, kind in _META_TYPES.items():
        v = meta.get(name)
        if kind is bool:
            ok = isinstance(v, bool)
        else:
            ok = isinstance(v, (int, float) if kind is float else int) and not isinstance(v, bool)
        if not ok:
            raise CacheError(f"stored {name!r} is {v!r}, not a {kind.__name__}.")
    if not (math.isfinite(meta["beta"]) and meta["beta"] > 0):
        raise CacheError(f"stored beta {meta['beta']!r} is not a positive number.")


def _stored_jacobian(arrays: dict, meta: dict, world):
    """The stored Jacobian: an :class:`~hatrade.solve.equilibrium.EquilibriumJacobian`
    whose labels are those of a layout this world allows (solving for R or beta), a plain
    array when it was stored unlabeled, or None."""
    from hatrade.core.markets import Layout
    from hatrade.solve.equilibrium import EquilibriumJacobian

    J = arrays.get("jacobian")
    if J is None:
        return None
    if J.ndim != 2 or J.shape[0] != J.shape[1] or not np.all(np.isfinite(J)):
        raise CacheError(f"stored Jacobian (shape {J.shape}) is not a finite square matrix.")
    labels = meta.get("jacobian_labels")
    if labels is None:
        return J
    tariffs = world.has_tariffs
    solve_fors = ("R",) if world.financial == "autarky" else ("R", "beta")
    layouts = [
        Layout(
            M=world.M,
            financial=world.financial,
            solve_for=s,
            tariffs=tariffs,
            R_fixed=None,
            beta_fixed=None,
        )
        for s in solve_fors
    ]
    unknowns, residuals = tuple(labels["unknowns"]), tuple(labels["residuals"])
    if not any(
        unknowns == lay.unknown_names(world.countries)
        and residuals == lay.residual_names(world.countries)
        for lay in layouts
    ):
        raise CacheError(
            f"stored Jacobian's labels (unknowns {', '.join(unknowns)}) do not fit "
            "this world's unknowns."
        )
    try:
        return EquilibriumJacobian(J, unknowns, residuals)
    except ValueError as err:  # ParameterError: labels and matrix disagree
        raise CacheError(f"stored Jacobian: {err}") from None


def equilibrium_from_arrays(arrays: dict, meta: dict, world, household, income=None):
    """Rebuild an :class:`~hatrade.solve.equilibrium.Equilibrium` for ``world`` and ``household``.

    The Jacobian comes back as the
    :class:`~hatrade.solve.equilibrium.EquilibriumJacobian` it was (so
    ``jacobian=eq.jacobian`` is checked by the next solve), with the solve's diagnostics.

    Raises
    ------
    StaleEntry
        When the entry is of older contents (no :data:`EQUILIBRIUM_CONTENT` marker: no
        Jacobian labels or timings); :meth:`Cache.memo` then recomputes it.
    CacheError
        When the stored arrays do not fit the world and household (countries, grid size,
        income states, Jacobian labels) or are not finite, or a stored scalar (beta, the
        convergence flag, counts, timings) is not of its type.
    """
    from hatrade.core.household import HHState, Policies
    from hatrade.core.income import income_process
    from hatrade.solve.equilibrium import Equilibrium, Prices

    if meta.get("content") != EQUILIBRIUM_CONTENT:
        raise StaleEntry(
            f"equilibrium entry of contents version {meta.get('content', 1)}, "
            f"this version stores {EQUILIBRIUM_CONTENT} (labeled Jacobian, "
            "Jacobian directions and timings)"
        )
    _check_meta(meta)
    inc = income or income_process(household)
    M, Na, Nz = world.M, household.n_a, len(inc.z)
    if list(meta.get("countries", [])) != list(world.countries):
        raise CacheError(f"stored countries {meta.get('countries')} differ from the world's.")
    want = {
        "w": (M,),
        "R": (M,),
        "T": (M,),
        "p": (M, M),
        "lam": (M, Na, Nz),
        "a_grid": (M, Na),
        "state_c": (M, Na, Nz, M),
        "state_v": (M, Na, Nz, M),
        "pol_c": (M, Na, Nz, M),
        "pol_a_p": (M, Na, Nz, M),
        "pol_v": (M, Na, Nz, M),
        "pol_pi": (M, Na, Nz, M),
        "pol_V": (M, Na, Nz),
    }
    for name, shape in want.items():
        if name not in arrays:
            raise CacheError(f"stored equilibrium lacks {name!r}.")
        a = arrays[name]
        if a.shape != shape:
            raise CacheError(f"stored {name!r} has shape {a.shape}, expected {shape}.")
        if not np.all(np.isfinite(a)):
            raise CacheError(f"stored {name!r} has non-finite entries.")
    aggregates = {k: arrays[f"agg_{k}"] for k in meta.get("aggregates", [])}
    if "M" not in aggregates or aggregates["M"].shape != (M, M):
        raise CacheError("stored equilibrium lacks the spending matrix.")
    return Equilibrium(
        world=world,
        household=household,
        income=inc,
        prices=Prices(w=arrays["w"], R=arrays["R"], T=arrays["T"], beta=float(meta["beta"])),
        p=arrays["p"],
        policies=Policies(*[arrays[f"pol_{f}"] for f in _POLICY_FIELDS]),
        lam=arrays["lam"],
        a_grid=arrays["a_grid"],
        aggregates=aggregates,
        state=HHState(c=arrays["state_c"], v=arrays["state_v"]),
        converged=bool(meta["converged"]),
        iterations=int(meta["iterations"]),
        residual=float(meta["residual"]),
        household_solves=int(meta["household_solves"]),
        jacobians=int(meta["jacobians"]),
        hh_iterations=arrays.get("hh_iterations"),
        jacobian=_stored_jacobian(arrays, meta, world),
        history=list(meta.get("history", [])),
        seconds=float(meta["seconds"]),
        jacobian_directions=int(meta["jacobian_directions"]),
        seconds_household=float(meta["seconds_household"]),
        seconds_jacobian=float(meta["seconds_jacobian"]),
    )


def cached_equilibrium(
    cache: Cache | None,
    world,
    household,
    solve: Callable[[], Any],
    *,
    options: dict,
    income=None,
    label: str | None = None,
):
    """Load the equilibrium of ``world`` and ``household`` solved with ``options``, or call
    ``solve()`` and store its result.

    Parameters
    ----------
    cache : Cache or None
        None: just solve.
    world, household, income : the primitives (the key's inputs, see
        :func:`equilibrium_inputs`).
    solve : callable () -> Equilibrium
        Computes the equilibrium on a miss (it may use any starting point).
    options : dict
        Solve options that determine the result (e.g. ``solve_for``, ``R``, ``beta``,
        ``tol``, ``hh_tol``).

    Returns
    -------
    (Equilibrium, hit)
    """
    if cache is None:
        return solve(), False
    inputs = equilibrium_inputs(world, household, income, **options)
    return cache.memo(
        "equilibrium",
        inputs,
        solve,
        equilibrium_to_arrays,
        lambda a, m: equilibrium_from_arrays(a, m, world, household, income),
        label=label,
    )
