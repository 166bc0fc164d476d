"""The small three-country world shared by the counterfactual, welfare and batch tests.

20 asset points and 2 income states: a full equilibrium takes a second or two. The same
world is available as objects (:func:`small_world`, :func:`small_household`) and as a TOML
file (:func:`small_toml`) for the CLI tests.
"""

from __future__ import annotations

import json

from hatrade import Household, World

#: Trade costs (importer row, exporter column).
D3 = [[1.0, 1.6, 1.8], [1.6, 1.0, 1.7], [1.8, 1.7, 1.0]]
_WORLD = dict(countries=["H", "F", "G"], tfp=[1.0, 0.9, 1.1], labor=[1.0, 0.7, 0.5])
_HOUSEHOLD = dict(gamma=1.45, sigma_eps=0.33, psi_slope=0.5, beta=0.92, n_a=20)
_INCOME = dict(rho_perm=0.9, var_perm=0.039, n_perm=2, var_iid=0.0522, n_iid=1)


def small_world(**kw) -> World:
    args = dict(_WORLD, d=D3)
    args.update(kw)
    return World(**args)


def small_household(**kw) -> Household:
    args = dict(_HOUSEHOLD, n_perm=_INCOME["n_perm"], n_iid=_INCOME["n_iid"])
    args.update(kw)
    return Household(**args)


def small_toml(d=D3) -> str:
    """The small world as a ``hatrade`` TOML file (solve R, guess 1.02)."""

    def table(name, items):
        return f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in items.items())

    return "\n".join(
        [
            table("household", _HOUSEHOLD),
            table("world", dict(_WORLD, trade_costs=[list(r) for r in d])),
            table("income", _INCOME),
            table("solve", {"R_guess": 1.02}),
        ]
    )
