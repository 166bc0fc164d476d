"""Tests for TOML solve configurations (hatrade.io.config)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hatrade.core.income import income_process
from hatrade.core.params import Household, ParameterError
from hatrade.data import COUNTRIES, INITIAL_BETA, load_calibration, load_initial_prices
from hatrade.io.config import (
    ConfigError,
    SolveConfig,
    calibration_config,
    load_config,
    loads_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_country.toml"

BASE = """
[household]
gamma = 2.0
sigma_eps = 0.3
psi_slope = 0.0
beta = 0.93

[world]
countries = ["H", "F"]
tfp = [1.0, 1.2]
labor = [1.0, 2.0]
trade_costs = [[1.0, 1.5], [1.6, 1.0]]
financial = "globalization"
"""


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="cfg.toml")
    return str(info.value)


def test_example_file_parses_with_paper_defaults():
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg, SolveConfig)
    assert cfg.name == "two_country"
    assert cfg.world.countries == ("H", "F")
    np.testing.assert_array_equal(cfg.world.d, [[1.0, 1.5], [1.5, 1.0]])
    assert cfg.world.financial == "globalization"
    hh = cfg.household
    assert (hh.gamma, hh.sigma_eps, hh.psi_slope, hh.beta) == (2.0, 0.3, 0.0, 0.93)
    # omitted: the paper's defaults
    paper = Household()
    assert (hh.phi, hh.a_max, hh.n_a) == (0.5, 8.0, 100)
    assert (hh.rho_perm, hh.var_perm, hh.n_perm, hh.var_iid, hh.n_iid) == (
        paper.rho_perm,
        paper.var_perm,
        paper.n_perm,
        paper.var_iid,
        paper.n_iid,
    )
    assert cfg.income is None
    # beta given -> solve for R
    assert cfg.solve_for == "R"
    kw = cfg.solve_kwargs()
    assert kw["solve_for"] == "R" and "beta_guess" not in kw and "income" not in kw


def test_values_are_read_in_country_order():
    cfg = loads_config(BASE)
    np.testing.assert_array_equal(cfg.world.tfp, [1.0, 1.2])
    np.testing.assert_array_equal(cfg.world.labor, [1.0, 2.0])
    assert cfg.world.d[1, 0] == 1.6  # importer F, exporter H


def test_tables_keyed_by_country_code():
    text = _edit(BASE, "tfp = [1.0, 1.2]", "tfp = {F = 1.2, H = 1.0}")
    text = _edit(text, "[household]", 'name = "keyed"\n[household]')
    text += "\n[solve]\nwages = {F = 2.0, H = 1.0}\n"
    cfg = loads_config(text)
    np.testing.assert_array_equal(cfg.world.tfp, [1.0, 1.2])
    np.testing.assert_array_equal(cfg.wages, [1.0, 2.0])
    assert cfg.name == "keyed"


def test_tfp_and_labor_default_to_one():
    text = _edit(_edit(BASE, "tfp = [1.0, 1.2]\n", ""), "labor = [1.0, 2.0]\n", "")
    cfg = loads_config(text)
    np.testing.assert_array_equal(cfg.world.tfp, [1.0, 1.0])
    np.testing.assert_array_equal(cfg.world.labor, [1.0, 1.0])


def test_solve_for_beta_and_options():
    text = _edit(BASE, "beta = 0.93\n", "")
    text += "\n[solve]\nsolve_for = 'beta'\nR = 1.02\nbeta_guess = 0.9\ntol = 1e-8\nmax_iter = 7\n"
    cfg = loads_config(text)
    assert cfg.solve_for == "beta" and cfg.household.beta is None
    kw = cfg.solve_kwargs()
    assert kw == {"solve_for": "beta", "R": 1.02, "tol": 1e-8, "max_iter": 7, "beta_guess": 0.9}
    # no beta anywhere -> solve for beta by default, at the paper's R
    cfg = loads_config(_edit(BASE, "beta = 0.93\n", ""))
    assert cfg.solve_for == "beta" and cfg.R == 1.01


def test_beta_in_solve_table():
    text = _edit(BASE, "beta = 0.93\n", "") + "\n[solve]\nbeta = 0.95\nR_guess = 1.0\n"
    cfg = loads_config(text)
    assert cfg.solve_for == "R" and cfg.household.beta == 0.95
    assert cfg.solve_kwargs()["R_guess"] == 1.0


def test_income_kmp_parameters():
    cfg = loads_config(BASE + "\n[income]\nn_perm = 3\nn_iid = 1\nrho_perm = 0.8\n")
    assert (cfg.household.n_perm, cfg.household.n_iid, cfg.household.rho_perm) == (3, 1, 0.8)
    assert income_process(cfg.household).z.size == 3


def test_too_much_memory_names_the_grid_and_the_income_states(monkeypatch):
    """The memory refusal names every field of the product it is about (whatever the
    machine: the limit is set), not only the asset grid."""
    monkeypatch.setenv("HATRADE_MEMORY_LIMIT", str(2**20))  # 1 MiB
    msg = _error(BASE + "\n[income]\nn_perm = 50\nn_iid = 2\n")
    assert msg.startswith("cfg.toml: [household] n_a, [income] n_perm, n_iid, [world] countries: ")
    assert "needs about" in msg and "HATRADE_MEMORY_LIMIT" in msg


def test_income_explicit_chain():
    text = BASE + "\n[income]\nz = [0.5, 1.5]\ntransition = [[0.9, 0.1], [0.2, 0.8]]\n"
    cfg = loads_config(text)
    inc = cfg.income
    assert inc is not None and inc.z.size == 2
    np.testing.assert_allclose(inc.dist @ inc.z, 1.0)  # rescaled to mean one
    np.testing.assert_allclose(inc.P, [[0.9, 0.1], [0.2, 0.8]])
    assert cfg.solve_kwargs()["income"] is inc
    d = cfg.to_dict()
    assert d["income"]["explicit"] is True and len(d["income"]["z"]) == 2


def test_to_dict_records_everything():
    d = loads_config(BASE, source="cfg.toml").to_dict()
    assert d["source"] == "cfg.toml"
    assert d["household"]["gamma"] == 2.0 and d["household"]["n_a"] == 100
    assert d["world"]["countries"] == ["H", "F"]
    assert d["solve"]["solve_for"] == "R" and d["solve"]["beta"] == 0.93
    assert len(d["income"]["z"]) == 10


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "old, new, must_contain",
    [
        # unknown keys, naming the allowed ones
        (
            "gamma = 2.0",
            "gama = 2.0",
            ["[household]", "'gama'", "allowed keys", "gamma", "sigma_eps"],
        ),
        (
            'financial = "globalization"',
            'financial = "globalization"\ntariff = 1',
            ["[world]", "'tariff'", "trade_costs"],
        ),
        ("[household]", "colour = 'red'\n[household]", ["top level", "'colour'", "household"]),
        # wrong lengths / mismatched country counts
        (
            "tfp = [1.0, 1.2]",
            "tfp = [1.0, 1.2, 1.3]",
            ["[world] tfp", "3 entries", "countries has 2"],
        ),
        ("labor = [1.0, 2.0]", "labor = [1.0]", ["[world] labor", "1 entries"]),
        (
            "trade_costs = [[1.0, 1.5], [1.6, 1.0]]",
            "trade_costs = [[1.0, 1.5]]",
            ["[world] trade_costs", "2 x 2"],
        ),
        (
            "trade_costs = [[1.0, 1.5], [1.6, 1.0]]",
            "trade_costs = [[1.0, 1.5], [1.6]]",
            ["[world] trade_costs", "2 x 2"],
        ),
        # non-numeric
        ("gamma = 2.0", "gamma = 'two'", ["[household] gamma", "'two'", "number"]),
        ("gamma = 2.0", "gamma = true", ["[household] gamma", "number"]),
        ("tfp = [1.0, 1.2]", "tfp = [1.0, 'x']", ["[world] tfp[1]", "number"]),
        ("gamma = 2.0", "gamma = nan", ["[household] gamma", "finite"]),
        ("gamma = 2.0", "gamma = 2.0\nn_a = 30.5", ["[household] n_a", "integer"]),
        # unknown country codes
        (
            "tfp = [1.0, 1.2]",
            "tfp = {H = 1.0, X = 1.2}",
            ["[world] tfp", "'X'", "allowed codes", "H, F"],
        ),
        ("tfp = [1.0, 1.2]", "tfp = {H = 1.0}", ["[world] tfp", "F"]),
        # out-of-range parameters
        ("gamma = 2.0", "gamma = -1.0", ["[household]", "gamma", "> 0"]),
        ("beta = 0.93", "beta = 1.2", ["[household]", "beta", "(0, 1)"]),
        ("sigma_eps = 0.3", "sigma_eps = 0.0", ["[household]", "sigma_eps"]),
        ("tfp = [1.0, 1.2]", "tfp = [1.0, -1.2]", ["[world]", "tfp", "positive"]),
        (
            "trade_costs = [[1.0, 1.5], [1.6, 1.0]]",
            "trade_costs = [[1.0, 0.5], [1.6, 1.0]]",
            ["[world]", "trade_costs[H,F]", ">= 1"],
        ),
        (
            "trade_costs = [[1.0, 1.5], [1.6, 1.0]]",
            "trade_costs = [[2.0, 1.5], [1.6, 1.0]]",
            ["[world]", "diagonal"],
        ),
        (
            'financial = "globalization"',
            'financial = "closed"',
            ["[world] financial", "'closed'", "'globalization'", "'autarky'"],
        ),
        ('countries = ["H", "F"]', 'countries = ["H", "H"]', ["[world] countries", "duplicate"]),
        ('countries = ["H", "F"]', "countries = []", ["[world] countries"]),
    ],
)
def test_bad_fields_are_named(old, new, must_contain):
    msg = _error(_edit(BASE, old, new))
    assert msg.startswith("cfg.toml: ")
    for part in must_contain:
        assert part in msg, (part, msg)


def test_contradictory_solve_options():
    assert "solve_for" in _error(BASE + "\n[solve]\nsolve_for = 'wages'\n")
    msg = _error(BASE + "\n[solve]\nsolve_for = 'beta'\n")
    assert "[household] beta" in msg and "beta_guess" in msg
    msg = _error(_edit(BASE, "beta = 0.93\n", "") + "\n[solve]\nsolve_for = 'R'\n")
    assert "[household] beta" in msg and "missing" in msg
    msg = _error(BASE + "\n[solve]\nR = 1.01\n")
    assert "[solve] R" in msg and "R_guess" in msg
    msg = _error(BASE + "\n[solve]\nbeta = 0.9\n")
    assert "both" in msg
    msg = _error(
        _edit(BASE, "globalization", "autarky").replace("beta = 0.93\n", "")
        + "\n[solve]\nsolve_for = 'beta'\n"
    )
    assert "[solve] solve_for" in msg and "autarky" in msg
    assert "wages" in _error(BASE + "\n[solve]\nwages = [1.0, -1.0]\n")
    assert "[solve] max_iter" in _error(BASE + "\n[solve]\nmax_iter = 0\n")


def test_income_errors():
    msg = _error(BASE + "\n[income]\nn_perm = 3\nz = [1.0, 2.0]\n")
    assert "[income]" in msg and "either" in msg
    msg = _error(BASE + "\n[income]\nz = [1.0, 2.0]\n")
    assert "[income] transition" in msg and "missing" in msg
    msg = _error(BASE + "\n[income]\nz = [1.0, 2.0]\ntransition = [[0.5, 0.6], [0.5, 0.5]]\n")
    assert "[income]" in msg and "stochastic" in msg
    msg = _error(BASE + "\n[income]\nz = [1.0, 2.0]\ntransition = [[1.0]]\n")
    assert "[income] transition" in msg and "2 x 2" in msg
    msg = _error(BASE + "\n[income]\nrho_perm = 1.5\n")
    assert "[income]" in msg and "rho_perm" in msg
    text = _edit(BASE, "psi_slope = 0.0", "psi_slope = 0.5")
    msg = _error(text + "\n[income]\nz = [1.0, 2.0]\ntransition = [[0.5, 0.5], [0.5, 0.5]]\n")
    assert "[income] log_z_perm" in msg


def test_syntax_and_file_errors(tmp_path):
    msg = _error("[world\ncountries = 1")
    assert "cfg.toml" in msg and "TOML" in msg and "line" in msg
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    assert "[world]" in _error("[household]\nbeta = 0.9\n")
    assert "[world] countries" in _error("[world]\ntfp = [1.0]\n")
    with pytest.raises(ConfigError, match="must be a table"):
        parse_config({"world": 3}, source="x")


def test_config_error_is_a_parameter_error():
    with pytest.raises(ParameterError):
        loads_config(_edit(BASE, "gamma = 2.0", "gamma = -2.0"))


def test_file_name_sets_default_name(tmp_path):
    path = tmp_path / "my world.toml"
    path.write_text(BASE)
    assert load_config(path).name == "my_world"
    assert load_config(path).source == str(path)


def test_calibration_config_starts_from_published_prices():
    cfg = calibration_config("baseline")
    cal = load_calibration("baseline")
    assert cfg.world.countries == COUNTRIES and cfg.solve_for == "beta" and cfg.R == 1.01
    assert cfg.household.beta is None and cfg.household.gamma == cal.gamma
    np.testing.assert_array_equal(cfg.wages, cal.wages.to_numpy())
    assert cfg.beta_guess == cal.beta
    assert cfg.calibration["vector"] == list(cal.params)
    init = calibration_config("log", from_initial=True, correct_germany=True)
    np.testing.assert_array_equal(init.wages, load_initial_prices().to_numpy())
    assert init.beta_guess == INITIAL_BETA and init.name == "log-correct-germany"
    assert init.world.labor[COUNTRIES.index("DEU")] == 0.225
    assert cfg.world.labor[COUNTRIES.index("DEU")] == 0.0225
    with pytest.raises(ParameterError, match="baseline"):
        calibration_config("nope")


def test_calibration_name_checked_once_and_files_read_once(monkeypatch):
    """One check of a calibration name (one exception type and message for the
    configuration, the world and the household), and a configuration reads the
    calibration's files once."""
    from hatrade.core import worlds
    from hatrade.core.worlds import ek_world, published_household

    messages = set()
    for make in (calibration_config, ek_world, published_household):
        with pytest.raises(ParameterError) as err:
            make("nope")
        assert type(err.value) is ParameterError
        messages.add(str(err.value))
    assert messages == {"calibration 'nope' is not allowed; allowed values: baseline, log."}

    calls = []
    load = worlds.load_calibration

    def counting(name):
        calls.append(name)
        return load(name)

    monkeypatch.setattr(worlds, "load_calibration", counting)
    cfg = calibration_config("log", correct_germany=True)
    assert calls == ["log"]
    assert cfg.world.meta["calibration"] == "log" and cfg.household.gamma == 1.0
    cal = load_calibration("log")
    np.testing.assert_array_equal(ek_world(cal).d, ek_world("log").d)
    assert published_household(cal, n_a=40) == published_household("log", n_a=40)


def test_solve_inputs_checked_as_the_solver_does():
    """parse_config places the solver's own checks (what is solved for, the options) in
    its tables: the same message as solve_equilibrium's, after the table and field."""
    from hatrade.solve.options import SolverOptions, solve_input_problem

    autarky = _edit(BASE, "globalization", "autarky").replace("beta = 0.93\n", "")
    msg = _error(autarky + "\n[solve]\nsolve_for = 'beta'\n")
    _, want = solve_input_problem("autarky", "beta", 1.01, None)
    assert msg == f"cfg.toml: [solve] solve_for: {want}"
    msg = _error(BASE + "\n[solve]\ntol = 1e6\n")
    with pytest.raises(ParameterError) as err:
        SolverOptions(tol=1e6)
    assert msg == f"cfg.toml: [solve] tol: {err.value}"
    assert "[solve] tol" in _error(BASE + "\n[solve]\ntol = -1e-8\n")
    msg = _error(_edit(BASE, "beta = 0.93\n", "") + "\n[solve]\nsolve_for = 'beta'\nR = -1.0\n")
    assert msg.startswith("cfg.toml: [solve] R: R = -1.0 is not allowed")
