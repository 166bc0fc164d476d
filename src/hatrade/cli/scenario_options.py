"""The scenario options shared by ``hatrade counterfactual`` and ``hatrade transition``.

Each ``*_option`` function returns a new typer option (typer options are not shared between
commands); a command bundles the values it parsed into one :class:`ScenarioOptions`, whose
:meth:`~ScenarioOptions.scenario` turns them into a checked
:class:`~hatrade.analysis.counterfactual.Scenario`, and :func:`base_world` resolves
``--calibration`` / ``--config`` into the baseline world.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import typer

from hatrade.core.errors import ParameterError

from ._common import calibration_option, config_option, fail

__all__ = [
    "ScenarioOptions",
    "importer_option",
    "exporter_option",
    "pair_option",
    "symmetric_option",
    "global_option",
    "trade_cost_change_option",
    "tariff_change_option",
    "tfp_option",
    "labor_option",
    "financial_option",
    "forbid_d_below_one_option",
    "allow_d_below_one_option",
    "name_option",
    "baseline_calibration_option",
    "baseline_config_option",
    "parse_changes",
    "scenario_from_options",
    "base_world",
    "baseline_equilibrium_of",
    "n_nodes_option",
    "check_n_nodes",
    "check_name",
    "default_name",
    "run_folder",
    "run_label",
]


@dataclass(frozen=True)
class ScenarioOptions:
    """The scenario options of one command as typer parsed them, passed on as one bundle.

    One field per option (``all_pairs`` is ``--global``); a command leaves the options it
    does not have at their defaults.
    """

    importer: Optional[str] = None
    exporter: Optional[str] = None
    pair: Optional[Sequence[str]] = None
    symmetric: bool = False
    all_pairs: bool = False
    trade_cost_change: float = 0.0
    tariff_change: float = 0.0
    tariff: Optional[float] = None
    tfp: Optional[Sequence[str]] = None
    labor: Optional[Sequence[str]] = None
    financial: Optional[str] = None
    rebate: Optional[str] = None
    labor_tax: Optional[Sequence[str]] = None
    forbid_d_below_one: bool = False
    allow_d_below_one: bool = False

    def scenario(self, name: Optional[str]):
        """The checked :class:`~hatrade.analysis.counterfactual.Scenario` named ``name``
        (or a name made from the selection and the change)."""
        from hatrade.analysis.counterfactual import Scenario, parse_pairs
        from hatrade.analysis.instruments import parse_assignments

        if self.forbid_d_below_one and self.allow_d_below_one:
            fail("give either --forbid-d-below-one or --allow-d-below-one, not both.")
        pairs = parse_pairs(list(self.pair) if self.pair else None)
        if name is None:
            name = default_name(
                self.importer, self.exporter, self.all_pairs, pairs, self.trade_cost_change
            )
        else:
            check_name(name)
        return Scenario(
            name=name,
            trade_cost_change=self.trade_cost_change,
            importer=self.importer,
            exporter=self.exporter,
            pairs=pairs,
            symmetric=self.symmetric,
            all_pairs=self.all_pairs,
            tariff_change=self.tariff_change,
            tfp_change=parse_changes(self.tfp, "tfp"),
            labor_change=parse_changes(self.labor, "labor"),
            financial=self.financial,
            allow_d_below_one=not self.forbid_d_below_one,
            tariff=self.tariff,
            rebate=self.rebate,
            labor_tax=parse_assignments(self.labor_tax, "--labor-tax"),
        )

    def given(self) -> list[str]:
        """The options given that change the economy (not their defaults), as flags
        (``--importer``, ``--global``, ...); the ``--*-d-below-one`` switches are not
        changes."""
        skip = ("forbid_d_below_one", "allow_d_below_one")
        return [
            "--" + ("global" if f.name == "all_pairs" else f.name.replace("_", "-"))
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) not in (None, False, 0.0, [])
        ]


def importer_option():
    return typer.Option(
        None, "--importer", "-i", help="Change this country's imports: d_ij for every j != i."
    )


def exporter_option():
    return typer.Option(
        None, "--exporter", help="Change this country's exports: d_ij for every i != j."
    )


def pair_option():
    return typer.Option(
        None, "--pair", help="An ordered pair IMPORTER,EXPORTER (repeatable), e.g. USA,CAN."
    )


def symmetric_option():
    return typer.Option(False, "--symmetric", help="--pair changes both directions.")


def global_option():
    return typer.Option(False, "--global", help="Change every pair i != j.")


def trade_cost_change_option():
    return typer.Option(
        0.0,
        "--trade-cost-change",
        "-d",
        help="Proportional change of the selected trade costs: d' = (1 + change) d.",
    )


def tariff_change_option():
    return typer.Option(
        0.0,
        "--tariff-change",
        help="Added to the selected pairs' ad-valorem tariffs (revenue rebated by --rebate).",
    )


def tariff_option():
    return typer.Option(
        None, "--tariff", help="Set the selected pairs' tariffs to this level (>= 0)."
    )


def rebate_option():
    return typer.Option(
        None, "--rebate", help="Tariff revenue: lump-sum, labor-income or group:<income group>."
    )


def labor_tax_option():
    return typer.Option(
        None, "--labor-tax", help="CODE=RATE: labor-income tax in [0, 1), rebated lump sum."
    )


def tfp_option():
    return typer.Option(None, "--tfp", help="CODE=CHANGE: A' = (1+change) A.")


def labor_option():
    return typer.Option(None, "--labor", help="CODE=CHANGE: L' = (1+change) L.")


def financial_option():
    return typer.Option(None, "--financial", help="New financial regime: globalization or autarky.")


def forbid_d_below_one_option():
    return typer.Option(
        False,
        "--forbid-d-below-one",
        help="Refuse a change that makes some d_ij fall below 1. By default it is applied "
        "as the paper does (its 10% cut of US import costs makes d_USA,CAN = 0.96), with "
        "one warning naming the pairs.",
    )


def allow_d_below_one_option():
    return typer.Option(
        False,
        "--allow-d-below-one",
        help="Deprecated, no effect: trade costs below 1 are now allowed by default "
        "(see --forbid-d-below-one).",
    )


def name_option():
    return typer.Option(None, "--name", help="Name of the run.")


def baseline_calibration_option():
    return calibration_option("The shipped calibration of the baseline world (default: baseline).")


def baseline_config_option():
    return config_option("A world TOML file (as for hatrade solve) instead of a calibration.")


def parse_changes(items: list[str] | None, what: str) -> dict:
    """``CODE=CHANGE`` items (``--tfp``, ``--labor``) as {code: change}."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ParameterError(f"--{what} {it!r}: write CODE=CHANGE, e.g. USA=0.05.")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ParameterError(f"--{what} {it!r}: the change must be a number.") from None
    return out


def scenario_from_options(name: Optional[str], **options):
    """The :class:`~hatrade.analysis.counterfactual.Scenario` of the scenario options given
    as keywords (the fields of :class:`ScenarioOptions`)."""
    return ScenarioOptions(**options).scenario(name)


def base_world(calibration, config):
    """(calibration name, SolveConfig or None, the baseline world, its source) of the
    ``--calibration`` / ``--config`` options."""
    if config is not None and calibration is not None:
        fail("give either --calibration or --config, not both.")
    cal_name = calibration.value if calibration is not None else "baseline"
    if config is not None:
        from hatrade.io.config import load_config

        cfg = load_config(config)
        return cal_name, cfg, cfg.world, str(config)
    from hatrade.core.worlds import ek_world

    return cal_name, None, ek_world(cal_name), f"calibration:{cal_name}"


def run_label(cal_name: str, config) -> str:
    """The run's label in its summary and figures: ``HA <calibration>`` or ``HA model``
    (``--config``)."""
    return f"HA {cal_name}" if config is None else "HA model"


def run_folder(out, kind: str, cal_name: str, config, name: str) -> Path:
    """``--out``, or the default ``results/<kind>-<calibration or config stem>-<name>``."""
    if out is None:
        base = cal_name if config is None else Path(config).stem
        out = Path("results") / f"{kind}-{base}-{name}"
    return Path(out)


def default_name(importer, exporter, all_pairs, pairs, trade_cost_change) -> str:
    """A run name from the selection and the change, e.g. ``USA-0.1``."""
    tag = (
        importer
        or exporter
        or ("global" if all_pairs else "-".join("-".join(p) for p in pairs) or "change")
    )
    name = f"{tag}{trade_cost_change:+g}" if trade_cost_change else tag
    return name.replace("+", "p").replace("/", "-")


def check_name(name: str) -> None:
    """``--name``: a label that is also a folder name (no path separators, not hidden)."""
    if not name.strip() or any(ch in name for ch in "/\\\0") or name.startswith("."):
        raise ParameterError(
            f"--name {name!r} is not allowed: use a non-empty name without '/', '\\' and "
            "not starting with '.' (it names the output folder)."
        )


def baseline_equilibrium_of(cal_name: str, cfg):
    """The baseline equilibrium of :func:`base_world`'s result: the shipped calibration's
    (cached) or the configuration's."""
    if cfg is None:
        from hatrade.analysis.counterfactual import baseline_equilibrium

        return baseline_equilibrium(cal_name)
    from hatrade import solve_equilibrium

    return solve_equilibrium(cfg.world, cfg.household, **cfg.solve_kwargs())


def n_nodes_option():
    return typer.Option(8, "--n-nodes", help="Lambda nodes of the batched EV solve (at least 3).")


def check_n_nodes(n_nodes: int) -> None:
    """The welfare options' range for ``--n-nodes``, checked before any solve."""
    from hatrade.welfare.inversion import EVOptions

    try:
        EVOptions(n_nodes=n_nodes)
    except ParameterError as err:
        raise ParameterError(f"--n-nodes: {err}") from None
