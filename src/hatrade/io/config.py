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
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hatrade.core.errors import check_identifier
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.memory import check_world_memory
from hatrade.core.params import FINANCIAL_REGIMES, Household, ParameterError, World
from hatrade.io.validate import loads_toml
from hatrade.io.world_folder import config_file
from hatrade.solve.options import resolve_solve_for, solve_input_problem, solver_options

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

#: The paper's world interest rate (docs/model.md 1.3).
DEFAULT_R: float = 1.01

_TOP_KEYS = ("name", "household", "world", "income", "solve")
_HOUSEHOLD_KEYS = ("gamma", "sigma_eps", "psi_slope", "beta", "phi", "a_max", "n_a")
_HOUSEHOLD_INT = ("n_a",)
_WORLD_KEYS = ("countries", "tfp", "labor", "trade_costs", "tariffs", "financial")
_KMP_KEYS = ("rho_perm", "var_perm", "n_perm", "var_iid", "n_iid")
_KMP_INT = ("n_perm", "n_iid")
_MATRIX_KEYS = ("z", "transition", "log_z_perm")
_SOLVE_KEYS = ("solve_for", "R", "beta", "R_guess", "beta_guess", "wages", "tol", "max_iter")


class ConfigError(ParameterError):
    """A configuration file (or dictionary) is malformed or describes an invalid model.

    The message names the source (file), the table and the field, and what is allowed.
    """


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


# ----------------------------------------------------------------------------- helpers


class _Ctx:
    """Error-message context: the source and the current table."""

    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {msg}")


def _where(table: str | None, key: str | None = None) -> str:
    if table is None:
        return key or "top level"
    return f"[{table}] {key}" if key else f"[{table}]"


def _check_keys(ctx: _Ctx, table: str | None, d: dict, allowed: tuple[str, ...]) -> None:
    unknown = [k for k in d if k not in allowed]
    if unknown:
        what = "key" if len(unknown) == 1 else "keys"
        raise ctx.error(
            _where(table),
            f"unknown {what} {', '.join(map(repr, unknown))}; allowed keys: {', '.join(allowed)}.",
        )


def _number(ctx: _Ctx, table: str | None, key: str, value, *, integer: bool = False):
    where = _where(table, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise ctx.error(where, f"{value!r} is not {kind}; {key} must be {kind}.")
    if integer:
        if not isinstance(value, int):
            raise ctx.error(
                where,
                f"{value!r} is not an integer; {key} must be an integer "
                "(write it without a decimal point).",
            )
        return int(value)
    x = float(value)
    if not math.isfinite(x):
        raise ctx.error(where, f"{value!r} is not finite; {key} must be a finite number.")
    return x


def _vector(
    ctx: _Ctx,
    table: str,
    key: str,
    value,
    countries: tuple[str, ...] | None,
    length: int | None = None,
) -> np.ndarray:
    """A list of numbers, or (given countries) a table keyed by country code."""
    where = _where(table, key)
    if isinstance(value, dict):
        if countries is None:
            raise ctx.error(where, "must be a list of numbers.")
        unknown = [k for k in value if k not in countries]
        if unknown:
            raise ctx.error(
                where,
                f"unknown country code(s) {', '.join(map(repr, unknown))}; "
                f"allowed codes ([world] countries): {', '.join(countries)}.",
            )
        missing = [c for c in countries if c not in value]
        if missing:
            raise ctx.error(
                where,
                f"no value for country code(s) {', '.join(missing)}; give "
                f"one number for each of {', '.join(countries)}.",
            )
        return np.array([_number(ctx, table, f"{key}.{c}", value[c]) for c in countries])
    if not isinstance(value, list):
        extra = " or a table keyed by country code" if countries is not None else ""
        raise ctx.error(where, f"{value!r} is not a list; {key} must be a list of numbers{extra}.")
    n = length if length is not None else (len(countries) if countries is not None else None)
    if n is not None and len(value) != n:
        if countries is not None and length is None:
            raise ctx.error(
                where,
                f"has {len(value)} entries but [world] countries has "
                f"{len(countries)} ({', '.join(countries)}); give one number per "
                "country.",
            )
        raise ctx.error(where, f"has {len(value)} entries; it must have {n}.")
    return np.array([_number(ctx, table, f"{key}[{k}]", v) for k, v in enumerate(value)])


def _matrix(ctx: _Ctx, table: str, key: str, value, n: int, labels: str) -> np.ndarray:
    where = _where(table, key)
    if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
        raise ctx.error(
            where, f"must be a list of {n} rows (lists of {n} numbers each), one row per {labels}."
        )
    if len(value) != n or any(len(r) != n for r in value):
        shape = f"{len(value)} rows of lengths {[len(r) for r in value]}"
        raise ctx.error(where, f"has {shape}; it must be {n} x {n} ({labels}).")
    return np.array(
        [
            [_number(ctx, table, f"{key}[{i}][{j}]", x) for j, x in enumerate(r)]
            for i, r in enumerate(value)
        ]
    )


def _table(ctx: _Ctx, raw: dict, key: str, required: bool = False) -> dict:
    if key not in raw:
        if required:
            raise ctx.error(f"[{key}]", f"missing; a configuration needs a [{key}] table.")
        return {}
    t = raw[key]
    if not isinstance(t, dict):
        raise ctx.error(key, f"must be a table ([{key}]), got {type(t).__name__}.")
    return t


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
    ctx = _Ctx(source)
    if not isinstance(raw, dict):
        raise ctx.error("top level", "a configuration must be a table.")
    _check_keys(ctx, None, raw, _TOP_KEYS)

    name = raw.get("name", default_name)
    try:
        check_identifier(name, "name")
    except ParameterError as err:
        raise ctx.error("name", f"{str(err)[:-1]} (it names the output folder).") from None

    hh_raw = _table(ctx, raw, "household")
    _check_keys(ctx, "household", hh_raw, _HOUSEHOLD_KEYS)
    hh_kw = {
        k: _number(ctx, "household", k, v, integer=k in _HOUSEHOLD_INT) for k, v in hh_raw.items()
    }
    inc_raw = _table(ctx, raw, "income")
    explicit_income = _parse_income(ctx, inc_raw, hh_kw)
    world = _parse_world(ctx, _table(ctx, raw, "world", required=True), source)
    s_raw = _table(ctx, raw, "solve")
    _check_keys(ctx, "solve", s_raw, _SOLVE_KEYS)
    solve = _parse_solve(ctx, s_raw, hh_kw, world)

    try:
        household = Household(beta=solve.pop("beta"), **hh_kw)
    except ParameterError as err:
        fld = str(err).split(" ", 1)[0]
        table = (
            "income"
            if fld in _KMP_KEYS
            else "solve"
            if fld == "beta" and "beta" in s_raw
            else "household"
        )
        raise ctx.error(f"[{table}]", str(err)) from None
    if explicit_income is not None and household.psi_slope != 0 and "log_z_perm" not in inc_raw:
        raise ctx.error(
            _where("income", "log_z_perm"),
            "missing; with an explicit income chain "
            f"and psi_slope = {household.psi_slope} != 0 the home-bias shifter needs "
            "log z_perm for each income state (or set psi_slope = 0).",
        )
    n_z = household.n_perm * household.n_iid if explicit_income is None else explicit_income.z.size
    try:
        check_world_memory(world.M, household.n_a, n_z)
    except ParameterError as err:
        raise ctx.error(_where("household", "n_a"), str(err)) from None
    return SolveConfig(
        name=name, world=world, household=household, income=explicit_income, source=source, **solve
    )


def _parse_income(ctx: _Ctx, inc_raw: dict, hh_kw: dict) -> IncomeProcess | None:
    """``[income]``: Rouwenhorst parameters go into ``hh_kw``; an explicit chain is returned."""
    _check_keys(ctx, "income", inc_raw, _KMP_KEYS + _MATRIX_KEYS)
    kmp = [k for k in inc_raw if k in _KMP_KEYS]
    mat = [k for k in inc_raw if k in _MATRIX_KEYS]
    if kmp and mat:
        raise ctx.error(
            "[income]",
            f"mixes Rouwenhorst parameters ({', '.join(kmp)}) with an "
            f"explicit chain ({', '.join(mat)}); give either {', '.join(_KMP_KEYS)} "
            "or z and transition (and log_z_perm).",
        )
    for k in kmp:
        hh_kw[k] = _number(ctx, "income", k, inc_raw[k], integer=k in _KMP_INT)
    if not mat:
        return None
    for k in ("z", "transition"):
        if k not in inc_raw:
            raise ctx.error(
                _where("income", k),
                "missing; an explicit income chain needs both z (levels) and transition (matrix).",
            )
    z = _vector(ctx, "income", "z", inc_raw["z"], None)
    if z.size < 1:
        raise ctx.error(_where("income", "z"), "is empty; give at least one income level.")
    P = _matrix(
        ctx,
        "income",
        "transition",
        inc_raw["transition"],
        z.size,
        "row z, column z' (row i: probabilities of moving from state i)",
    )
    lzp = None
    if "log_z_perm" in inc_raw:
        lzp = _vector(ctx, "income", "log_z_perm", inc_raw["log_z_perm"], None, z.size)
    try:
        return IncomeProcess.from_matrix(z, P, lzp)
    except ParameterError as err:
        raise ctx.error("[income]", str(err)) from None


def _parse_countries(ctx: _Ctx, w_raw: dict) -> tuple[str, ...]:
    if "countries" not in w_raw:
        raise ctx.error(
            _where("world", "countries"),
            'missing; list the country codes, e.g. countries = ["H", "F"].',
        )
    countries = w_raw["countries"]
    if not isinstance(countries, list) or not countries:
        raise ctx.error(
            _where("world", "countries"),
            f"{countries!r} is not allowed: it must be a non-empty list of country codes.",
        )
    try:
        codes = tuple(check_identifier(c, f"countries[{k}]") for k, c in enumerate(countries))
    except ParameterError as err:
        raise ctx.error("[world]", str(err)) from None
    if dup := sorted({c for c in codes if codes.count(c) > 1}):
        msg = f"duplicate code(s) {', '.join(dup)}; country codes must be unique."
        raise ctx.error(_where("world", "countries"), msg)
    return codes


def _parse_world(ctx: _Ctx, w_raw: dict, source: str) -> World:
    """``[world]``: countries, TFP, labor, trade costs, tariffs and the financial regime."""
    _check_keys(ctx, "world", w_raw, _WORLD_KEYS)
    countries = _parse_countries(ctx, w_raw)
    M = len(countries)
    tfp = _vector(ctx, "world", "tfp", w_raw["tfp"], countries) if "tfp" in w_raw else np.ones(M)
    labor = (
        _vector(ctx, "world", "labor", w_raw["labor"], countries)
        if "labor" in w_raw
        else np.ones(M)
    )
    order = f"importer rows x exporter columns, in the order {', '.join(countries)}"
    if "trade_costs" not in w_raw:
        if M > 1:
            raise ctx.error(
                _where("world", "trade_costs"),
                f"missing; give the {M} x {M} "
                "matrix d_ij (importer i in rows, exporter j in columns, d_ii = 1).",
            )
        d = np.ones((1, 1))
    else:
        d = _matrix(ctx, "world", "trade_costs", w_raw["trade_costs"], M, order)
    tariffs = None
    if "tariffs" in w_raw:
        tariffs = _matrix(ctx, "world", "tariffs", w_raw["tariffs"], M, order)
    financial = w_raw.get("financial", "globalization")
    if financial not in FINANCIAL_REGIMES:
        raise ctx.error(
            _where("world", "financial"),
            f"{financial!r} is not allowed; allowed "
            f"values: {', '.join(map(repr, FINANCIAL_REGIMES))}.",
        )
    try:
        return World(
            countries=countries,
            tfp=tfp,
            labor=labor,
            d=d,
            tariffs=tariffs,
            financial=financial,
            meta={"source": source},
        )
    except ParameterError as err:
        raise ctx.error("[world]", str(err)) from None


#: Where check_solve_inputs' fields live in a configuration.
_SOLVE_INPUT_WHERE = {
    "solve_for": ("solve", "solve_for"),
    "beta": ("household", "beta"),
    "R": ("solve", "R"),
}


def _parse_solve(ctx: _Ctx, s_raw: dict, hh_kw: dict, world: World) -> dict:
    """``[solve]`` (and ``[household] beta``, removed from ``hh_kw``): the SolveConfig
    fields solve_for, R, beta, R_guess, beta_guess, wages, tol and max_iter."""
    if "beta" in s_raw and "beta" in hh_kw:
        raise ctx.error(
            _where("solve", "beta"),
            "beta is given both in [household] and in [solve]; give it in one place.",
        )
    beta = hh_kw.pop("beta", None)
    if "beta" in s_raw:
        beta = _number(ctx, "solve", "beta", s_raw["beta"])
    solve_for = resolve_solve_for(s_raw.get("solve_for"), beta)
    R = _number(ctx, "solve", "R", s_raw["R"]) if "R" in s_raw else DEFAULT_R
    problem = solve_input_problem(world.financial, solve_for, R, beta)
    if problem is not None:
        raise ctx.error(_where(*_SOLVE_INPUT_WHERE[problem[0]]), problem[1])
    _check_solve_contradictions(ctx, s_raw, solve_for, beta)
    R_guess = _number(ctx, "solve", "R_guess", s_raw["R_guess"]) if "R_guess" in s_raw else None
    if R_guess is not None and not R_guess > 0:
        raise ctx.error(_where("solve", "R_guess"), f"{R_guess!r} is not allowed: must be > 0.")
    beta_guess = None
    if "beta_guess" in s_raw:
        beta_guess = _number(ctx, "solve", "beta_guess", s_raw["beta_guess"])
        if not 0 < beta_guess < 1:
            raise ctx.error(
                _where("solve", "beta_guess"),
                f"{beta_guess!r} is not allowed: it must be in the open interval (0, 1).",
            )
    wages = None
    if "wages" in s_raw:
        wages = _vector(ctx, "solve", "wages", s_raw["wages"], world.countries)
        if np.any(wages <= 0):
            raise ctx.error(_where("solve", "wages"), "starting wages must all be > 0.")
    tol = _number(ctx, "solve", "tol", s_raw["tol"]) if "tol" in s_raw else 1e-10
    max_iter = (
        _number(ctx, "solve", "max_iter", s_raw["max_iter"], integer=True)
        if "max_iter" in s_raw
        else 30
    )
    for key, value in (("tol", tol), ("max_iter", max_iter)):
        try:
            solver_options(**{key: value})
        except ParameterError as err:
            raise ctx.error(_where("solve", key), str(err)) from None
    return {
        "solve_for": solve_for,
        "R": R,
        "beta": beta,
        "R_guess": R_guess,
        "beta_guess": beta_guess,
        "wages": wages,
        "tol": tol,
        "max_iter": max_iter,
    }


def _check_solve_contradictions(ctx: _Ctx, s_raw: dict, solve_for: str, beta: float | None) -> None:
    """Options of a configuration that the chosen unknowns make meaningless."""
    if solve_for == "beta" and beta is not None:
        raise ctx.error(
            _where("household", "beta"),
            "beta is given but solve_for = 'beta' "
            "solves for it; remove beta, or give a starting value as [solve] "
            "beta_guess.",
        )
    if solve_for == "R" and "R" in s_raw:
        raise ctx.error(
            _where("solve", "R"),
            "R is solved for (solve_for = 'R'); give a "
            "starting value as R_guess instead, or use solve_for = 'beta' to fix R.",
        )
    if solve_for == "R" and "beta_guess" in s_raw:
        raise ctx.error(
            _where("solve", "beta_guess"),
            "beta is fixed (solve_for = 'R'); beta_guess is only used with solve_for = 'beta'.",
        )
    if solve_for == "beta" and "R_guess" in s_raw:
        raise ctx.error(
            _where("solve", "R_guess"),
            "R is fixed (solve_for = 'beta'); give it "
            "as [solve] R. R_guess is only used with solve_for = 'R'.",
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
