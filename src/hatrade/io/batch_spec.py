r"""Batch files: many counterfactuals described at once, read and checked.

A batch file (TOML) lists runs; each run is a counterfactual
:class:`~hatrade.analysis.counterfactual.Scenario` of a baseline world, optionally with
other household parameters (a new baseline, with beta recalibrated or held), and the
welfare of some countries::

    name = "unilateral-cuts"
    calibration = "baseline"      # a shipped calibration, or:  config = "world.toml"
                                  # (a solve configuration, path relative to this file)

    [options]                     # all optional
    welfare = "importer"          # "importer" (default), "all", "none" or a list of codes
    verify_ev = false             # evaluate every state's EV residual (slow; hatrade.welfare.ev)
    n_nodes = 8                   # lambda nodes of the batched EV solve, integer >= 3
    tol = 1e-10                   # equilibrium tolerance, in (0, 0.1]
    max_iter = 30                 # Newton iterations per equilibrium, integer >= 1
    workers = 4                   # Dask workers, integer >= 1 (optional)

    [defaults]                    # merged into every run
    trade_cost_change = -0.10
    allow_d_below_one = true

    [[runs]]                      # explicit runs: Scenario keys, plus
    name = "USA-cut"              #   household = {sigma_eps = 0.25, ...}
    importer = "USA"              #   recalibrate_beta = true  (solve beta at the baseline R)
                                  #   calibration = "log"      (per-run shipped calibration)

    [[sweep]]                     # generated runs, one per value
    over = "importer"             # importer | exporter | a household parameter
    values = "all"                # "all" countries, or a list
    # over = "sigma_eps"; values = [0.25, 0.33, 0.40]; recalibrate_beta = true

Everything is checked when the file is read (:func:`load_batch`), before any solve: unknown
keys, unknown countries, changes that make :math:`d_{ij} < 1` (unless allowed) or TFP
non-positive, invalid household parameters, duplicate run names, the memory the largest
run needs. Values are typed as in configuration files: a number is not a string or a
boolean, an integer has no fraction (``n_a = 20.7`` and ``gamma = "2"`` are refused, not
coerced); the options' ranges are those of the API (:class:`~hatrade.solve.options.
SolverOptions` for ``tol`` and ``max_iter``, :data:`hatrade.welfare.inversion.EV_RANGES`
for ``n_nodes``), household parameters are checked by
:class:`~hatrade.core.params.Household` itself, and names (the file's and every run's, used
as folder names) by :func:`hatrade.core.errors.check_identifier`. The error is one line
that names the entry and the field.

A run with ``kind = "transition"`` is a perfect-foresight transition instead, with the keys
``periods``, ``news_date``, ``linear`` and ``path`` (:mod:`hatrade.io.batch_transition`).

The runs are executed by :func:`hatrade.io.batch.run_batch`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from hatrade.analysis.counterfactual import Scenario, apply_scenario
from hatrade.core.errors import check_identifier
from hatrade.core.memory import check_world_memory
from hatrade.core.params import ParameterError
from hatrade.io.batch_transition import (
    TRANSITION_RUN_KEYS,
    check_transition_run,
    transition_fields,
)
from hatrade.io.fingerprint import fingerprint
from hatrade.io.validate import (
    BOOLEAN,
    NUMBER,
    Rule,
    check_keys,
    check_table,
    integer,
    loads_toml,
    option_problems,
)
from hatrade.io.world_folder import WORLD_FILE
from hatrade.solve.options import solve_option_problem
from hatrade.welfare.inversion import ev_option_problem

__all__ = [
    "BatchRun",
    "BatchSpec",
    "BatchError",
    "load_batch",
    "loads_batch",
    "parse_batch",
    "base_config",
    "baseline_key",
    "plain_baseline_key",
    "SCENARIO_KEYS",
]

#: Keys of a run that describe its :class:`~hatrade.analysis.counterfactual.Scenario`.
SCENARIO_KEYS = tuple(f.name for f in dataclasses.fields(Scenario))

_TOP = ("name", "calibration", "config", "options", "defaults", "runs", "sweep")
_OPTIONS = ("welfare", "verify_ev", "n_nodes", "tol", "max_iter", "workers")
#: Typed checks of [options] (welfare is checked against the world's countries).
_OPTION_RULES = {
    "verify_ev": BOOLEAN,
    "n_nodes": Rule.from_problem(ev_option_problem, "n_nodes"),
    "max_iter": Rule.from_problem(solve_option_problem, "max_iter"),
    "tol": Rule.from_problem(solve_option_problem, "tol"),
    "workers": integer(1).or_none(),
}
_RUN_EXTRA = ("household", "recalibrate_beta", "calibration") + TRANSITION_RUN_KEYS
_HOUSEHOLD_KEYS = ("gamma", "sigma_eps", "psi_slope", "phi", "a_max", "n_a")
#: Typed checks of a run's household overrides (their ranges: Household itself).
_HOUSEHOLD_RULES = {k: (integer(3) if k == "n_a" else NUMBER) for k in _HOUSEHOLD_KEYS}


class BatchError(ParameterError):
    """A batch file is malformed, or describes an invalid run (the message names it)."""


def baseline_key(calibration, household, recalibrate_beta) -> str:
    """The key of a run's baseline: its calibration, household overrides and whether beta
    is recalibrated (JSON text)."""
    return json.dumps(
        {"calibration": calibration, "household": household, "recalibrate_beta": recalibrate_beta},
        sort_keys=True,
    )


def plain_baseline_key(key: str) -> str:
    """The key of the plain baseline (no household overrides) of a baseline key."""
    return baseline_key(json.loads(key)["calibration"], {}, False)


@dataclass(frozen=True)
class BatchRun:
    """One run: a scenario, household overrides and the countries whose welfare to compute."""

    name: str
    scenario: Scenario
    household: dict = field(default_factory=dict)
    recalibrate_beta: bool = False
    calibration: str | None = None
    welfare: tuple = ()
    #: ``{}`` for a counterfactual; for a transition (``kind = "transition"``): periods,
    #: news_date, linear, path and the path table (:mod:`hatrade.io.batch_transition`).
    transition: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"transition"`` or ``"counterfactual"``."""
        return "transition" if self.transition else "counterfactual"

    def baseline_key(self) -> str:
        return baseline_key(
            self.calibration, self.household, self.recalibrate_beta if self.household else False
        )

    def fingerprint(self, spec: "BatchSpec") -> str:
        """16 hex digits of :func:`hatrade.io.fingerprint.fingerprint` of the run's
        specification (with the code revision): a finished run with another fingerprint
        is re-run."""
        d = {
            "scenario": self.scenario.to_dict(),
            "household": self.household,
            "recalibrate_beta": self.recalibrate_beta,
            "calibration": self.calibration,
            "welfare": list(self.welfare),
            "source": spec.source_fingerprint,
            "options": {k: spec.options[k] for k in ("verify_ev", "n_nodes", "tol")},
        }
        if self.transition:  # (counterfactual runs keep their fingerprints)
            d["transition"] = self.transition
        return fingerprint("batch-run", d, length=16)


@dataclass(frozen=True)
class BatchSpec:
    """A validated batch: the base world source, options and runs."""

    name: str
    runs: tuple
    calibration: str | None = None
    config_path: str | None = None
    options: dict = field(default_factory=dict)
    source: str = "<string>"

    @property
    def source_fingerprint(self) -> str:
        """The base world's source: the calibration's name, or a fingerprint of the
        configuration file's text."""
        if self.config_path is not None:
            try:
                path = Path(self.config_path)
                path = path / WORLD_FILE if path.is_dir() else path  # a world folder
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = self.config_path
            return fingerprint("batch-source", {"config": text}, length=16)
        return f"calibration:{self.calibration}"


# ----------------------------------------------------------------------------- reading


def base_config(calibration, config_path):
    """(world, household, solve kwargs, config) of the base world; cheap (no solve)."""
    if config_path is not None:
        from hatrade.io.config import load_config

        cfg = load_config(config_path)
        kw = cfg.solve_kwargs()
        return cfg.world, cfg.household, kw, cfg
    from hatrade.io.config import calibration_config

    cfg = calibration_config(calibration)
    return cfg.world, cfg.household, cfg.solve_kwargs(), cfg


def loads_batch(text: str, source: str = "<string>", base_dir: Path | None = None) -> BatchSpec:
    """Parse and validate a batch file's text (see the module docstring)."""
    return parse_batch(loads_toml(text, source, BatchError), source=source, base_dir=base_dir)


def load_batch(path) -> BatchSpec:
    """Read and validate a batch file; every error names the file and the entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BatchError(f"cannot read batch file {path}: {err.strerror or err}") from None
    return loads_batch(text, source=str(path), base_dir=path.parent)


def _base_source(raw: dict, source: str, base_dir: Path | None):
    """(name, calibration, config path) of the batch file's top level, checked."""
    from hatrade.data import CALIBRATIONS

    unknown = sorted(set(raw) - set(_TOP))
    if unknown:
        raise BatchError(
            f"{source}: unknown top-level key(s) {unknown}; allowed: {', '.join(_TOP)}."
        )
    name = raw.get("name", Path(source).stem if source != "<string>" else "batch")
    try:
        check_identifier(name, "name")
    except ParameterError as err:
        raise BatchError(f"{source}: {err}") from None
    cal, cfg_path = raw.get("calibration"), raw.get("config")
    if cal is not None and cfg_path is not None:
        raise BatchError(f"{source}: give either calibration or config, not both.")
    if cfg_path is None and cal is None:
        cal = "baseline"
    if cal is not None and cal not in CALIBRATIONS:
        raise BatchError(
            f"{source}: calibration = {cal!r} is not allowed; allowed: {', '.join(CALIBRATIONS)}."
        )
    if cfg_path is not None:
        p = Path(cfg_path)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        cfg_path = str(p)
    return name, cal, cfg_path


def _options(raw: dict, source: str, countries, errors: list[str]) -> dict:
    """The [options] table with its defaults; problems are appended to ``errors``."""
    opts = {
        "welfare": "importer",
        "verify_ev": False,
        "n_nodes": 8,
        "tol": 1e-10,
        "max_iter": 30,
        "workers": None,
    }
    opts.update(check_table(raw.get("options"), _OPTIONS, f"{source}: [options]", BatchError))
    errors += [f"[options] {msg}" for msg in option_problems(opts, _OPTION_RULES)]
    wf = opts["welfare"]
    if isinstance(wf, str):
        if wf not in ("importer", "all", "none"):
            errors.append(
                f"[options] welfare = {wf!r}: use 'importer', 'all', 'none' or a "
                "list of country codes"
            )
    elif isinstance(wf, list):
        for c in wf:
            if not isinstance(c, str) or c not in countries:
                errors.append(
                    f"[options] welfare: unknown country {c!r} (allowed: {', '.join(countries)})"
                )
    else:
        errors.append(f"[options] welfare = {wf!r}: use 'importer', 'all', 'none' or a list")
    return opts


def _sweep_entries(
    where: str, sw: dict, defaults: dict, countries, errors: list[str]
) -> list[tuple[str, dict]]:
    """The runs one [[sweep]] table generates, as (where, run table) pairs."""
    if not isinstance(sw, dict) or "over" not in sw or "values" not in sw:
        errors.append(f"{where}: needs 'over' and 'values'")
        return []
    over, values = sw["over"], sw["values"]
    rest = {kk: v for kk, v in sw.items() if kk not in ("over", "values")}
    entries = []
    if over in ("importer", "exporter"):
        vals = list(countries) if values == "all" else values
        if not isinstance(vals, list):
            errors.append(f"{where}: values must be 'all' or a list of country codes")
            return []
        for c in vals:
            entries.append(
                (
                    f"{where} ({over} = {c})",
                    {
                        **defaults,
                        **rest,
                        over: c,
                        "name": f"{rest['name']}-{c}" if "name" in rest else str(c),
                    },
                )
            )
    elif over in _HOUSEHOLD_KEYS:
        if not isinstance(values, list) or not values:
            errors.append(f"{where}: values must be a non-empty list of numbers")
            return []
        for v in values:
            hhd = dict(defaults.get("household", {}) or {})
            hhd.update(rest.get("household", {}) or {})
            hhd[over] = v
            entries.append(
                (
                    f"{where} ({over} = {v})",
                    {**defaults, **rest, "household": hhd, "name": f"{rest.get('name', over)}-{v}"},
                )
            )
    else:
        errors.append(
            f"{where}: over = {over!r} is not allowed; use importer, exporter or "
            f"one of {', '.join(_HOUSEHOLD_KEYS)}"
        )
    return entries


def _entries(raw: dict, source: str, countries, errors: list[str]) -> list[tuple[str, dict]]:
    """Every run of the file ([[runs]] merged with [defaults], then the sweeps)."""
    defaults = raw.get("defaults", {}) or {}
    if not isinstance(defaults, dict):
        raise BatchError(f"{source}: [defaults] must be a table.")
    entries: list[tuple[str, dict]] = []
    runs_raw = raw.get("runs", []) or []
    if not isinstance(runs_raw, list):
        raise BatchError(f"{source}: runs must be an array of tables ([[runs]]).")
    for k, r in enumerate(runs_raw):
        if not isinstance(r, dict):
            errors.append(f"runs[{k}]: must be a table")
            continue
        entries.append(
            (f"runs[{k}]" + (f" ({r['name']})" if "name" in r else ""), {**defaults, **r})
        )
    sweeps = raw.get("sweep", []) or []
    if isinstance(sweeps, dict):
        sweeps = [sweeps]
    for k, sw in enumerate(sweeps):
        entries += _sweep_entries(f"sweep[{k}]", sw, defaults, countries, errors)
    if not entries and not errors:
        errors.append("no runs: add [[runs]] tables or a [[sweep]]")
    return entries


def parse_batch(raw: dict, source: str = "<dict>", base_dir: Path | None = None) -> BatchSpec:
    """Validate a parsed batch file (module docstring); every problem is collected and
    reported at once, naming its entry.

    Raises
    ------
    BatchError
    """
    name, cal, cfg_path = _base_source(raw, source, base_dir)
    try:
        world, household, base_kw, _ = base_config(cal, cfg_path)
    except ParameterError as err:
        raise BatchError(f"{source}: the base world is invalid: {err}") from None
    errors: list[str] = []
    opts = _options(raw, source, world.countries, errors)
    entries = _entries(raw, source, world.countries, errors)
    runs, names = [], set()
    for where, d in entries:
        try:
            runs.append(_parse_run(where, d, world, household, cal, opts, base_dir))
        except ParameterError as err:
            errors.append(str(err))
            continue
        if runs[-1].name in names:
            errors.append(f"{where}: duplicate run name {runs[-1].name!r}")
        names.add(runs[-1].name)
    if not errors and runs:
        inc = base_kw.get("income")
        n_z = household.n_perm * household.n_iid if inc is None else int(inc.z.size)
        _check_memory(runs, world, household, n_z, errors)
    if errors:
        raise BatchError(
            f"{source}: {len(errors)} error(s) in the batch file (no run was started): "
            + " | ".join(" ".join(e.split()) for e in errors)
        )
    return BatchSpec(
        name=name,
        runs=tuple(runs),
        calibration=cal,
        config_path=cfg_path,
        options=opts,
        source=source,
    )


def _parse_run(where, d, world, household, base_cal, opts, base_dir=None) -> BatchRun:
    from hatrade.data import CALIBRATIONS

    d = dict(d)
    if "name" not in d:
        sc = d.get("importer") or d.get("exporter") or ("global" if d.get("all_pairs") else None)
        if sc is None:
            raise ParameterError(f"{where}: give the run a name")
        d["name"] = str(sc)
    name = d["name"]
    try:
        check_identifier(name, "name")
    except ParameterError as err:
        raise ParameterError(f"{where}: {str(err)[:-1]} (it names the output folder)") from None
    transition = transition_fields(where, d, world, base_dir)
    hh_over = d.pop("household", {}) or {}
    recal = d.pop("recalibrate_beta", False)
    cal = d.pop("calibration", None)
    if not isinstance(recal, bool):
        raise ParameterError(f"{where}: recalibrate_beta = {recal!r}: must be true or false")
    if not isinstance(hh_over, dict):
        raise ParameterError(f"{where}: household must be a table of parameters")
    check_keys(hh_over, _HOUSEHOLD_KEYS, f"{where}: household", ParameterError, end="")
    problems = option_problems(hh_over, _HOUSEHOLD_RULES)
    if problems:
        raise ParameterError(f"{where}: household: {problems[0]}")
    if cal is not None:
        if base_cal is None:
            raise ParameterError(
                f"{where}: calibration per run needs a batch on a shipped calibration (not config)"
            )
        if cal not in CALIBRATIONS:
            raise ParameterError(
                f"{where}: calibration = {cal!r} is not allowed; allowed: {', '.join(CALIBRATIONS)}"
            )
    unknown = sorted(set(d) - set(SCENARIO_KEYS))
    if unknown:
        raise ParameterError(
            f"{where}: unknown key(s) {unknown}; allowed: {', '.join(SCENARIO_KEYS + _RUN_EXTRA)}"
        )
    scenario = Scenario.from_dict(d, where=where)
    if transition:
        check_transition_run(where, scenario, world, transition["news_date"])
    # validate the change on the world (countries, d >= 1, TFP > 0)
    try:
        apply_scenario(world, scenario)
    except ParameterError as err:
        raise ParameterError(f"{where}: {err}") from None
    try:
        household.replace(beta=None, **hh_over)
    except ParameterError as err:
        raise ParameterError(f"{where}: household: {err}") from None
    wf = opts["welfare"]
    if wf == "importer":
        welfare = tuple(c for c in (scenario.importer,) if c)
        if not welfare and scenario.all_pairs:
            welfare = tuple(world.countries)
        if not welfare and scenario.pairs:
            welfare = tuple(dict.fromkeys(p[0] for p in scenario.pairs))
    elif wf == "all":
        welfare = tuple(world.countries)
    elif wf == "none":
        welfare = ()
    else:  # a list of codes (anything else is reported by _options)
        welfare = tuple(wf) if isinstance(wf, list) else ()
    return BatchRun(
        name=name,
        scenario=scenario,
        household=dict(hh_over),
        recalibrate_beta=recal,
        calibration=cal,
        welfare=welfare,
        transition=transition,
    )


def _check_memory(runs, world, household, n_z: int, errors: list[str]) -> None:
    """The memory of the largest run's world solve (:mod:`hatrade.core.memory`)."""
    n_a = max(int(r.household.get("n_a", household.n_a)) for r in runs)
    try:
        check_world_memory(world.M, n_a, n_z)
    except ParameterError as err:
        errors.append(f"household n_a = {n_a} with {n_z} income states: {err}")
