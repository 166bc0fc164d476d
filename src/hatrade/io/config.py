r"""Solve configurations: a TOML file, or a shipped calibration, turned into model objects.

A configuration says everything :func:`hatrade.solve_equilibrium` needs: a
:class:`~hatrade.core.params.World`, a :class:`~hatrade.core.params.Household`, the income process
and the solve options. It is validated completely when it is read, so that bad input fails
before any numerical work, with a message that names the file, the table and the field and
says what is allowed.

TOML layout (every table but ``[world]`` is optional)::

    name = "two_country"          # optional (default: the file name); names the output folder

    [household]                   # defaults: the paper's (docs/model.md 1.3)
    gamma = 2.0                   # > 0
    sigma_eps = 0.3               # > 0
    psi_slope = 0.0
    beta = 0.93                   # in (0, 1); given => solve for R
    phi = 0.5                     # borrowing limit, multiple of TFP
    a_max = 8.0                   # top of the asset grid, multiple of TFP
    n_a = 100                     # asset grid points, integer >= 3

    [world]
    countries = ["H", "F"]        # unique codes (letters, digits, . _ + -; used in file names)
    tfp = [1.0, 1.0]              # or a table by code: tfp = {H = 1.0, F = 1.0}; default 1
    labor = [1.0, 1.0]            # likewise; default 1
    trade_costs = [[1.0, 1.5], [1.5, 1.0]]   # d_ij, importer i (row), exporter j (column)
    tariffs = [[0.0, 0.1], [0.0, 0.0]]       # optional, t_ij >= 0, zero diagonal
    financial = "globalization"   # or "autarky"

    [income]                      # optional; default docs/model.md 1.2
    rho_perm = 0.90               # either Rouwenhorst (KMP) parameters ...
    var_perm = 0.039
    n_perm = 5
    var_iid = 0.0522
    n_iid = 2
    # ... or an explicit chain (levels are rescaled to mean one):
    # z = [0.5, 1.5]
    # transition = [[0.9, 0.1], [0.1, 0.9]]
    # log_z_perm = [-0.5, 0.5]    # needed when psi_slope != 0

    [solve]                       # optional
    solve_for = "R"               # "R" (beta given) or "beta" (R given); default: "R" if beta given
    R = 1.01                      # the fixed rate when solving for beta
    beta = 0.93                   # the fixed discount factor (or in [household], not both)
    R_guess = 1.0                 # starting value when solving for R
    beta_guess = 0.93             # starting value when solving for beta
    wages = [1.0, 1.0]            # starting wages (list or table by code)
    tol = 1e-10                   # max abs relative excess demand, in (0, 0.1]
    max_iter = 30                 # Newton iterations, >= 1

Under ``financial = "autarky"`` each country has its own bond market and rate, so only
``solve_for = "R"`` (given beta) is possible. ``name`` and the codes must pass
:func:`~hatrade.core.errors.check_identifier`; the memory a solve needs is checked too.

The tables' keys, the typed field checks and the validation of each table live in
:mod:`hatrade.io.config_schema`; this module assembles them into a :class:`SolveConfig`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hatrade.core.errors import check_identifier
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.memory import check_world_memory
from hatrade.core.params import Household, ParameterError, World
from hatrade.io.config_schema import (
    DEFAULT_R,
    KMP_KEYS,
    TOP_KEYS,
    ConfigContext,
    ConfigError,
    check_table_keys,
    config_table,
    field_where,
    parse_household,
    parse_income,
    parse_solve,
    parse_world,
)
from hatrade.io.validate import loads_toml
from hatrade.io.world_folder import config_file

__all__ = [
    "ConfigError",
    "SolveConfig",
    "load_config",
    "loads_config",
    "parse_config",
    "calibration_config",
    "DEFAULT_R",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SolveConfig:
    """Everything needed to solve one world equilibrium.

    Attributes
    ----------
    name : str
        Short name (used for the default output folder ``results/solve-<name>``).
    world : World
    household : Household
        ``household.beta`` is the fixed discount factor when ``solve_for == "R"`` and None
        when ``solve_for == "beta"``.
    income : IncomeProcess or None
        An explicit income chain, or None for the Rouwenhorst process of ``household``.
    solve_for : {"R", "beta"}
    R : float
        The fixed interest rate when ``solve_for == "beta"`` (unused otherwise).
    R_guess, beta_guess : float or None
        Starting values of the unknown rate / discount factor (None: the solver's default).
    wages : ndarray (M,) or None
        Starting wages (None: all ones).
    tol : float
        Convergence tolerance (max abs relative excess demand).
    max_iter : int
        Newton iterations.
    source : str
        Where the configuration came from (a file path, ``"calibration:<name>"``, ...).
    calibration : dict or None
        For a shipped calibration: its name, the 46-number calibration vector,
        ``correct_germany`` and the starting point.
    """

    name: str
    world: World
    household: Household
    income: IncomeProcess | None = None
    solve_for: str = "R"
    R: float = DEFAULT_R
    R_guess: float | None = None
    beta_guess: float | None = None
    wages: np.ndarray | None = None
    tol: float = 1e-10
    max_iter: int = 30
    source: str = "<dict>"
    calibration: dict | None = field(default=None)

    def solve_kwargs(self) -> dict:
        """Keyword arguments for :func:`hatrade.solve_equilibrium` (besides world, household)."""
        kw: dict[str, Any] = dict(
            solve_for=self.solve_for, R=self.R, tol=self.tol, max_iter=self.max_iter
        )
        if self.income is not None:
            kw["income"] = self.income
        if self.wages is not None:
            kw["wages"] = np.asarray(self.wages, float)
        if self.R_guess is not None:
            kw["R_guess"] = self.R_guess
        if self.beta_guess is not None:
            kw["beta_guess"] = self.beta_guess
        return kw

    def to_dict(self) -> dict:
        """JSON-ready description (what ``summary.json`` records as the parameters used)."""
        inc = self.income if self.income is not None else income_process(self.household)
        out = {
            "name": self.name,
            "source": self.source,
            "household": self.household.to_dict(),
            "world": self.world.to_dict(),
            "income": {
                "explicit": self.income is not None,
                "z": np.asarray(inc.z).tolist(),
                "transition": np.asarray(inc.P).tolist(),
                "log_z_perm": np.asarray(inc.log_z_perm).tolist(),
            },
            "solve": {
                "solve_for": self.solve_for,
                "R": self.R if self.solve_for == "beta" else None,
                "beta": self.household.beta if self.solve_for == "R" else None,
                "R_guess": self.R_guess,
                "beta_guess": self.beta_guess,
                "wages_guess": None if self.wages is None else np.asarray(self.wages).tolist(),
                "tol": self.tol,
                "max_iter": self.max_iter,
            },
        }
        if self.calibration is not None:
            out["calibration"] = dict(self.calibration)
        return out


# ----------------------------------------------------------------------------- parsing


def parse_config(raw: dict, source: str = "<dict>", default_name: str = "custom") -> SolveConfig:
    """Validate a configuration dictionary (the parsed TOML) and build a :class:`SolveConfig`.

    Parameters
    ----------
    raw : dict
        Tables ``household``, ``world``, ``income``, ``solve`` and an optional ``name``
        (see the module docstring).
    source : str
        Used in error messages (usually the file path).
    default_name : str
        The name when ``raw`` has none.

    Raises
    ------
    ConfigError
        Unknown tables or keys (the message lists the allowed ones), wrong types, lengths
        that do not match the number of countries, unknown country codes, out-of-range
        parameters, or options that contradict each other. What is solved for and the
        solver's options are checked by the solver's own checks
        (:func:`hatrade.solve.options.check_solve_inputs`,
        :class:`hatrade.solve.options.SolverOptions`), placed in the file's tables.
    """
    ctx = ConfigContext(source)
    if not isinstance(raw, dict):
        raise ctx.error("top level", "a configuration must be a table.")
    check_table_keys(ctx, None, raw, TOP_KEYS)

    name = raw.get("name", default_name)
    try:
        check_identifier(name, "name")
    except ParameterError as err:
        raise ctx.error("name", f"{str(err)[:-1]} (it names the output folder).") from None

    hh_kw = parse_household(ctx, config_table(ctx, raw, "household"))
    inc_raw = config_table(ctx, raw, "income")
    explicit_income = parse_income(ctx, inc_raw, hh_kw)
    world = parse_world(ctx, config_table(ctx, raw, "world", required=True), source)
    s_raw = config_table(ctx, raw, "solve")
    solve = parse_solve(ctx, s_raw, hh_kw, world)

    try:
        household = Household(beta=solve.pop("beta"), **hh_kw)
    except ParameterError as err:
        fld = str(err).split(" ", 1)[0]
        table = (
            "income"
            if fld in KMP_KEYS
            else "solve"
            if fld == "beta" and "beta" in s_raw
            else "household"
        )
        raise ctx.error(f"[{table}]", str(err)) from None
    if explicit_income is not None and household.psi_slope != 0 and "log_z_perm" not in inc_raw:
        raise ctx.error(
            field_where("income", "log_z_perm"),
            "missing; with an explicit income chain "
            f"and psi_slope = {household.psi_slope} != 0 the home-bias shifter needs "
            "log z_perm for each income state (or set psi_slope = 0).",
        )
    n_z = household.n_perm * household.n_iid if explicit_income is None else explicit_income.z.size
    try:
        check_world_memory(world.M, household.n_a, n_z)
    except ParameterError as err:  # the fields whose product is too large
        states = "[income] z" if explicit_income is not None else "[income] n_perm, n_iid"
        where = f"{field_where('household', 'n_a')}, {states}, [world] countries"
        raise ctx.error(where, str(err)) from None
    return SolveConfig(
        name=name, world=world, household=household, income=explicit_income, source=source, **solve
    )


def loads_config(text: str, source: str = "<string>", default_name: str = "custom") -> SolveConfig:
    """Parse a configuration from TOML text (see :func:`parse_config`)."""
    return parse_config(
        loads_toml(text, source, ConfigError, end="."), source=source, default_name=default_name
    )


def load_config(path) -> SolveConfig:
    """Read and validate a TOML configuration file.

    Parameters
    ----------
    path : path-like
        The file; its name without ``.toml`` is the default ``name``.

    Returns
    -------
    SolveConfig

    Raises
    ------
    ConfigError
        Missing or unreadable file, invalid TOML (with line and column), or an invalid
        configuration (see :func:`parse_config`). A folder is read as its world.toml.
    """
    path = config_file(path)  # a world folder (--world DIR) stands for its world.toml
    if not path.is_file():
        raise ConfigError(
            f"{path}: configuration file does not exist"
            + (" (it is a folder)." if path.is_dir() else ".")
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the configuration file ({err}).") from None
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", path.stem).replace("..", "_")[:56] or "custom"
    if not stem[0].isalnum():
        stem = "custom-" + stem
    cfg = loads_config(text, source=str(path), default_name=stem)
    log.info("configuration %s: %d countries, solve for %s", path, cfg.world.M, cfg.solve_for)
    return cfg


def calibration_config(
    name: str = "baseline", *, from_initial: bool = False, correct_germany: bool = False
) -> SolveConfig:
    """The 19-country world of a shipped calibration, solved for beta at R = 1.01.

    Parameters
    ----------
    name : {"baseline", "log"}
    from_initial : bool
        Start from the author's initial prices (:func:`hatrade.data.load_initial_prices`,
        beta 0.93) instead of the published equilibrium prices (which converge in one or
        two Newton steps).
    correct_germany : bool
        Use Germany's corrected labor force 0.225 (the published calibration used 0.0225).
        The calibration vector is not re-estimated.

    Raises
    ------
    ParameterError
        For an unknown calibration name (the message lists the allowed ones).
    """
    from hatrade.core.worlds import ek_world, published_calibration, published_household
    from hatrade.data import INITIAL_BETA, load_initial_prices

    cal = published_calibration(name)  # the calibration's files, read once
    world = ek_world(cal, correct_germany=correct_germany)
    household = published_household(cal)
    if from_initial:
        wages, beta_guess, start = load_initial_prices().to_numpy(), INITIAL_BETA, "initial"
    else:
        wages, beta_guess, start = cal.wages.to_numpy(), cal.beta, "published"
    run_name = name + ("-correct-germany" if correct_germany else "")
    return SolveConfig(
        name=run_name,
        world=world,
        household=household,
        income=None,
        solve_for="beta",
        R=DEFAULT_R,
        beta_guess=float(beta_guess),
        wages=np.asarray(wages, float),
        source=f"calibration:{name}",
        calibration={
            "name": name,
            "vector": np.asarray(cal.params).tolist(),
            "correct_germany": bool(correct_germany),
            "start": start,
            "published_beta": float(cal.beta),
        },
    )
