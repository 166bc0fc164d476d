r"""The solve-configuration schema: its tables and keys, typed field checks, and each table
validated into the model object it describes.

:func:`hatrade.io.config.parse_config` assembles a configuration from these pieces; the TOML
layout (every key, its default and allowed values) is in the docstring of
:mod:`hatrade.io.config`. Every check raises :class:`ConfigError` with a message that names
the source (file), the table and the field, and says what is allowed.
"""

from __future__ import annotations

import math

import numpy as np

from hatrade.core.errors import check_identifier
from hatrade.core.income import IncomeProcess
from hatrade.core.params import FINANCIAL_REGIMES, ParameterError, World
from hatrade.solve.options import resolve_solve_for, solve_input_problem, solver_options

__all__ = [
    "ConfigError",
    "ConfigContext",
    "DEFAULT_R",
    "TOP_KEYS",
    "KMP_KEYS",
    "field_where",
    "check_table_keys",
    "config_table",
    "parse_household",
    "parse_income",
    "parse_world",
    "parse_solve",
]

#: The paper's world interest rate (docs/model.md 1.3).
DEFAULT_R: float = 1.01

TOP_KEYS = ("name", "household", "world", "income", "solve")
_HOUSEHOLD_KEYS = ("gamma", "sigma_eps", "psi_slope", "beta", "phi", "a_max", "n_a")
_HOUSEHOLD_INT = ("n_a",)
_WORLD_KEYS = ("countries", "tfp", "labor", "trade_costs", "tariffs", "financial")
KMP_KEYS = ("rho_perm", "var_perm", "n_perm", "var_iid", "n_iid")
_KMP_INT = ("n_perm", "n_iid")
_MATRIX_KEYS = ("z", "transition", "log_z_perm")
_SOLVE_KEYS = ("solve_for", "R", "beta", "R_guess", "beta_guess", "wages", "tol", "max_iter")


class ConfigError(ParameterError):
    """A configuration file (or dictionary) is malformed or describes an invalid model.

    The message names the source (file), the table and the field, and what is allowed.
    """


class ConfigContext:
    """Error-message context: the source of the configuration (usually the file path)."""

    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {msg}")


def field_where(table: str | None, key: str | None = None) -> str:
    """Where a field lives, for error messages: ``"[table] key"``, ``"[table]"`` or the key."""
    if table is None:
        return key or "top level"
    return f"[{table}] {key}" if key else f"[{table}]"


def check_table_keys(
    ctx: ConfigContext, table: str | None, d: dict, allowed: tuple[str, ...]
) -> None:
    """Refuse keys of ``d`` (table ``table``; None: the top level) that are not in ``allowed``."""
    unknown = [k for k in d if k not in allowed]
    if unknown:
        what = "key" if len(unknown) == 1 else "keys"
        raise ctx.error(
            field_where(table),
            f"unknown {what} {', '.join(map(repr, unknown))}; allowed keys: {', '.join(allowed)}.",
        )


def _number(ctx: ConfigContext, table: str | None, key: str, value, *, integer: bool = False):
    where = field_where(table, key)
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
    ctx: ConfigContext,
    table: str,
    key: str,
    value,
    countries: tuple[str, ...] | None,
    length: int | None = None,
) -> np.ndarray:
    """A list of numbers, or (given countries) a table keyed by country code."""
    where = field_where(table, key)
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


def _matrix(ctx: ConfigContext, table: str, key: str, value, n: int, labels: str) -> np.ndarray:
    where = field_where(table, key)
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


def config_table(ctx: ConfigContext, raw: dict, key: str, required: bool = False) -> dict:
    """The table ``[key]`` of ``raw`` (an empty one when absent and not ``required``)."""
    if key not in raw:
        if required:
            raise ctx.error(f"[{key}]", f"missing; a configuration needs a [{key}] table.")
        return {}
    t = raw[key]
    if not isinstance(t, dict):
        raise ctx.error(key, f"must be a table ([{key}]), got {type(t).__name__}.")
    return t


def parse_household(ctx: ConfigContext, hh_raw: dict) -> dict:
    """``[household]``: its keys checked and its numbers read (the Household keyword arguments)."""
    check_table_keys(ctx, "household", hh_raw, _HOUSEHOLD_KEYS)
    return {
        k: _number(ctx, "household", k, v, integer=k in _HOUSEHOLD_INT) for k, v in hh_raw.items()
    }


def parse_income(ctx: ConfigContext, inc_raw: dict, hh_kw: dict) -> IncomeProcess | None:
    """``[income]``: Rouwenhorst parameters go into ``hh_kw``; an explicit chain is returned."""
    check_table_keys(ctx, "income", inc_raw, KMP_KEYS + _MATRIX_KEYS)
    kmp = [k for k in inc_raw if k in KMP_KEYS]
    mat = [k for k in inc_raw if k in _MATRIX_KEYS]
    if kmp and mat:
        raise ctx.error(
            "[income]",
            f"mixes Rouwenhorst parameters ({', '.join(kmp)}) with an "
            f"explicit chain ({', '.join(mat)}); give either {', '.join(KMP_KEYS)} "
            "or z and transition (and log_z_perm).",
        )
    for k in kmp:
        hh_kw[k] = _number(ctx, "income", k, inc_raw[k], integer=k in _KMP_INT)
    if not mat:
        return None
    for k in ("z", "transition"):
        if k not in inc_raw:
            raise ctx.error(
                field_where("income", k),
                "missing; an explicit income chain needs both z (levels) and transition (matrix).",
            )
    z = _vector(ctx, "income", "z", inc_raw["z"], None)
    if z.size < 1:
        raise ctx.error(field_where("income", "z"), "is empty; give at least one income level.")
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


def _parse_countries(ctx: ConfigContext, w_raw: dict) -> tuple[str, ...]:
    if "countries" not in w_raw:
        raise ctx.error(
            field_where("world", "countries"),
            'missing; list the country codes, e.g. countries = ["H", "F"].',
        )
    countries = w_raw["countries"]
    if not isinstance(countries, list) or not countries:
        raise ctx.error(
            field_where("world", "countries"),
            f"{countries!r} is not allowed: it must be a non-empty list of country codes.",
        )
    try:
        codes = tuple(check_identifier(c, f"countries[{k}]") for k, c in enumerate(countries))
    except ParameterError as err:
        raise ctx.error("[world]", str(err)) from None
    if dup := sorted({c for c in codes if codes.count(c) > 1}):
        msg = f"duplicate code(s) {', '.join(dup)}; country codes must be unique."
        raise ctx.error(field_where("world", "countries"), msg)
    return codes


def parse_world(ctx: ConfigContext, w_raw: dict, source: str) -> World:
    """``[world]``: countries, TFP, labor, trade costs, tariffs and the financial regime."""
    check_table_keys(ctx, "world", w_raw, _WORLD_KEYS)
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
                field_where("world", "trade_costs"),
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
            field_where("world", "financial"),
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


def parse_solve(ctx: ConfigContext, s_raw: dict, hh_kw: dict, world: World) -> dict:
    """``[solve]`` (and ``[household] beta``, removed from ``hh_kw``): the SolveConfig
    fields solve_for, R, beta, R_guess, beta_guess, wages, tol and max_iter."""
    check_table_keys(ctx, "solve", s_raw, _SOLVE_KEYS)
    if "beta" in s_raw and "beta" in hh_kw:
        raise ctx.error(
            field_where("solve", "beta"),
            "beta is given both in [household] and in [solve]; give it in one place.",
        )
    beta = hh_kw.pop("beta", None)
    if "beta" in s_raw:
        beta = _number(ctx, "solve", "beta", s_raw["beta"])
    solve_for = resolve_solve_for(s_raw.get("solve_for"), beta)
    R = _number(ctx, "solve", "R", s_raw["R"]) if "R" in s_raw else DEFAULT_R
    problem = solve_input_problem(world.financial, solve_for, R, beta)
    if problem is not None:
        raise ctx.error(field_where(*_SOLVE_INPUT_WHERE[problem[0]]), problem[1])
    _check_solve_contradictions(ctx, s_raw, solve_for, beta)
    R_guess = _number(ctx, "solve", "R_guess", s_raw["R_guess"]) if "R_guess" in s_raw else None
    if R_guess is not None and not R_guess > 0:
        raise ctx.error(
            field_where("solve", "R_guess"), f"{R_guess!r} is not allowed: must be > 0."
        )
    beta_guess = None
    if "beta_guess" in s_raw:
        beta_guess = _number(ctx, "solve", "beta_guess", s_raw["beta_guess"])
        if not 0 < beta_guess < 1:
            raise ctx.error(
                field_where("solve", "beta_guess"),
                f"{beta_guess!r} is not allowed: it must be in the open interval (0, 1).",
            )
    wages = None
    if "wages" in s_raw:
        wages = _vector(ctx, "solve", "wages", s_raw["wages"], world.countries)
        if np.any(wages <= 0):
            raise ctx.error(field_where("solve", "wages"), "starting wages must all be > 0.")
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
            raise ctx.error(field_where("solve", key), str(err)) from None
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


def _check_solve_contradictions(
    ctx: ConfigContext, s_raw: dict, solve_for: str, beta: float | None
) -> None:
    """Options of a configuration that the chosen unknowns make meaningless."""
    if solve_for == "beta" and beta is not None:
        raise ctx.error(
            field_where("household", "beta"),
            "beta is given but solve_for = 'beta' "
            "solves for it; remove beta, or give a starting value as [solve] "
            "beta_guess.",
        )
    if solve_for == "R" and "R" in s_raw:
        raise ctx.error(
            field_where("solve", "R"),
            "R is solved for (solve_for = 'R'); give a "
            "starting value as R_guess instead, or use solve_for = 'beta' to fix R.",
        )
    if solve_for == "R" and "beta_guess" in s_raw:
        raise ctx.error(
            field_where("solve", "beta_guess"),
            "beta is fixed (solve_for = 'R'); beta_guess is only used with solve_for = 'beta'.",
        )
    if solve_for == "beta" and "R_guess" in s_raw:
        raise ctx.error(
            field_where("solve", "R_guess"),
            "R is fixed (solve_for = 'beta'); give it "
            "as [solve] R. R_guess is only used with solve_for = 'R'.",
        )
