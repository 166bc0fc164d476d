"""The 30-country case (issue 19; docs/own-data.md): calibrate to trade-30-countries-2006.csv,
write a world folder, draw model against data trade, and run two counterfactuals (a 10%
cut of US import costs; the removal of all PTAs), beta fixed at its calibrated value.

Run: ``python examples/trade30.py [--out worlds/trade30] [--n-a 100 --n-perm 5 --n-iid 2]``
(the defaults are the baseline household; a coarser grid runs much faster). Resumable: a
second run continues from OUT/checkpoint.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hatrade import published_household, solve_equilibrium
from hatrade.calibration.generic import calibrate_data, fit_table, prepare, trade_costs_with
from hatrade.cli.world import write_world_folder
from hatrade.data.tidy import read_trade_data
from hatrade.io.folders import prepare_output
from hatrade.io.world_folder import file_sha256

FORMULA = "lndist + contiguity + common_language + pta"


def figure(fit, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    x, y = np.log(fit["share_data"]), np.log(fit["share_model"])
    ax.scatter(x, y, s=6, alpha=0.6)
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set_xlabel("log import share, data")
    ax.set_ylabel("log import share, model")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def counterfactual(eq0, d1, hh):
    world = eq0.world.replace(d=d1)
    eq1 = solve_equilibrium(
        world,
        hh.replace(beta=eq0.beta),
        solve_for="R",
        wages=eq0.prices.w,
        R_guess=float(np.asarray(eq0.R).ravel()[0]),
        state=eq0.state,
    )
    c = list(eq0.countries)
    home0 = np.diag(eq0.trade_shares)
    home1 = np.diag(eq1.trade_shares)
    return {
        "converged": bool(eq1.converged),
        "R": float(np.asarray(eq1.R).ravel()[0]),
        "wage_change_percent": dict(zip(c, (100 * (eq1.prices.w / eq0.prices.w - 1)).tolist())),
        "home_share_change_pp": dict(zip(c, (100 * (home1 - home0)).tolist())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("worlds/trade30"))
    ap.add_argument("--n-a", type=int, default=100)
    ap.add_argument("--n-perm", type=int, default=5)
    ap.add_argument("--n-iid", type=int, default=2)
    ap.add_argument("--figure", type=Path, default=Path("docs/figures/own-data-30-fit.png"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    src = Path(str(resources.files("hatrade.data") / "trade-30-countries-2006.csv"))
    hh = published_household("baseline", n_a=args.n_a, n_perm=args.n_perm, n_iid=args.n_iid)
    cs = prepare(read_trade_data(src), FORMULA, "ols")
    folder = prepare_output(args.out, "world", update=True)
    t0 = time.perf_counter()
    with folder.session():
        folder.claim("checkpoint.json", "counterfactuals.json")
        res, _ = calibrate_data(
            cs,
            household=hh,
            tol=1e-8,
            max_iter=15,
            checkpoint=args.out / "checkpoint.json",
            resume=(args.out / "checkpoint.json").is_file(),
        )
        write_world_folder(
            folder, res, cs, {"data": str(src), "sha256": file_sha256(src)}, args.out.name
        )
        eq0 = res.equilibrium
        d_us = np.array(eq0.world.d)
        us = list(eq0.countries).index("USA")
        d_us[us] = np.where(np.arange(eq0.world.M) == us, 1.0, 0.9 * d_us[us])
        out = {
            "calibration": {
                "converged": res.converged,
                "max_moment_error": res.residual,
                "iterations": res.iterations,
                "equilibrium_solves": res.equilibrium_solves,
                "seconds": res.seconds,
                "beta": eq0.beta,
                "household": hh.to_dict(),
            },
            "us_import_costs_minus_10pct": counterfactual(eq0, d_us, hh),
            "no_pta": counterfactual(eq0, trade_costs_with(cs, res.params, {"pta": 0.0}), hh),
            "seconds_total": time.perf_counter() - t0,
        }
        folder.write_json("counterfactuals.json", out)
    fit = fit_table(res, cs)
    corr = float(np.corrcoef(np.log(fit["share_data"]), np.log(fit["share_model"]))[0, 1])
    figure(fit, args.figure, f"30 countries, 2006 (corr. of logs {corr:.3f})")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
