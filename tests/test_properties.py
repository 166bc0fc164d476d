"""Property-based tests of every input entry point (issue 16, classes 2, 4 and 5).

Generated TOML configurations, batch files and API keyword values: each either gives a
valid object or raises :class:`~hatrade.core.errors.ParameterError` (or a subclass) with
ONE line that names the field; never another exception type, never a silent coercion.
Nothing here solves an equilibrium (the checks all come before any work).
"""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatrade import Household, World
from hatrade.analysis.counterfactual import Scenario
from hatrade.core.errors import ParameterError
from hatrade.io.batch_spec import BatchSpec, loads_batch
from hatrade.io.config import SolveConfig, loads_config
from hatrade.solve.options import SolverOptions
from hatrade.welfare.inversion import EVOptions
from smallworld import D3, small_toml

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ----------------------------------------------------------------------------- TOML text


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(doc: dict) -> str:
    """A small TOML writer: scalars first, then one [table] per dict, [[array]] per list of
    dicts (enough for configurations and batch files)."""
    lines = [f'"{k}" = {_toml_value(v)}' for k, v in doc.items() if not _is_table(v)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f'["{k}"]')
            lines += [f'"{kk}" = {_toml_value(x)}' for kk, x in v.items()]
        elif _is_table(v):
            for t in v:
                lines.append(f'[["{k}"]]')
                lines += [f'"{kk}" = {_toml_value(x)}' for kk, x in t.items()]
    return "\n".join(lines) + "\n"


def _is_table(v) -> bool:
    return isinstance(v, dict) or (
        isinstance(v, list) and bool(v) and all(isinstance(t, dict) for t in v)
    )


#: Values a user might write anywhere: wrong types, out of range, NaN/inf, huge, path-like.
SCALARS = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 1, 2, 3, -1, 10**7, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-12, 0.5, 20.7, 1e6, -0.1, float("nan"), float("inf")]),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["2", "H/../../x", "..", "", "a b", "USA", "F", "importer"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg, msg
    assert msg.strip(), "empty message"
    return msg


# ----------------------------------------------------------------------------- configs

BASE_CONFIG = {
    "name": "small",
    "household": {"gamma": 1.45, "sigma_eps": 0.33, "psi_slope": 0.5, "beta": 0.92, "n_a": 20},
    "world": {"countries": ["H", "F", "G"], "tfp": [1.0, 0.9, 1.1], "trade_costs": D3},
    "income": {"rho_perm": 0.9, "var_perm": 0.039, "n_perm": 2, "var_iid": 0.0522, "n_iid": 1},
    "solve": {"R_guess": 1.02, "tol": 1e-10, "max_iter": 30},
}
CONFIG_FIELDS = [
    ("name", None),
    *[("household", k) for k in ("gamma", "sigma_eps", "psi_slope", "beta", "phi", "a_max")],
    ("household", "n_a"),
    *[("income", k) for k in ("rho_perm", "var_perm", "n_perm", "var_iid", "n_iid")],
    *[("world", k) for k in ("countries", "tfp", "labor", "financial")],
    *[("solve", k) for k in ("tol", "max_iter", "R_guess", "solve_for")],
    ("household", "unknown_key"),
    ("solve", "tolerance"),
]


def _config_with(field, value) -> dict:
    doc = copy.deepcopy(BASE_CONFIG)
    table, key = field
    if key is None:
        doc[table] = value
    else:
        doc[table][key] = value
    return doc


def _check_config(doc: dict, field) -> None:
    try:
        cfg = loads_config(to_toml(doc), source="gen.toml")
    except ParameterError as err:
        msg = _one_line(err)
        assert msg.startswith("gen.toml: "), msg
        table, key = field
        named = key or table
        # the field, or the one it is checked against (counts follow the countries)
        assert named in msg or (table == "world" and "countries" in msg), msg
        return
    assert isinstance(cfg, SolveConfig)


@SETTINGS
@given(field=st.sampled_from(CONFIG_FIELDS), value=VALUES)
def test_generated_configs_load_or_fail_in_one_line(field, value):
    _check_config(_config_with(field, value), field)


@SETTINGS
@given(codes=st.lists(st.text(min_size=0, max_size=6), min_size=3, max_size=3))
def test_generated_country_codes(codes):
    doc = _config_with(("world", "countries"), codes)
    try:
        cfg = loads_config(to_toml(doc), source="gen.toml")
    except ParameterError as err:
        assert "countries" in _one_line(err)
        return
    for c in cfg.world.countries:  # accepted codes are safe as file names
        assert "/" not in c and "\\" not in c and ".." not in c and c.strip() == c and c


@SETTINGS
@given(n_a=st.integers(min_value=10**8, max_value=10**9))
def test_huge_grids_refused_with_the_estimate(n_a):
    # refused on any machine: the Jacobian one direction at a time needs over 1 TiB (a
    # million points fit in chunks on a machine with 23 GB: hatrade.core.memory)
    doc = _config_with(("household", "n_a"), n_a)
    with pytest.raises(ParameterError) as err:
        loads_config(to_toml(doc), source="gen.toml")
    msg = _one_line(err.value)
    assert "n_a" in msg and "GiB" in msg


def test_config_regressions():
    # [solve] tol = 1e6 used to label a non-equilibrium converged
    with pytest.raises(ParameterError, match=r"\[solve\] tol.*tol = 1000000.0"):
        loads_config(to_toml(_config_with(("solve", "tol"), 1e6)))
    # a code used as a folder name
    bad = _config_with(("world", "countries"), ["H/../../x", "F", "G"])
    with pytest.raises(ParameterError, match=r"countries\[0\] = 'H/\.\./\.\./x' is not allowed"):
        loads_config(to_toml(bad))
    with pytest.raises(ParameterError, match="name = '../x'"):
        loads_config(to_toml(_config_with(("name", None), "../x")))


# ----------------------------------------------------------------------------- batches

BASE_BATCH = {
    "name": "cuts",
    "config": "world.toml",
    "options": {"n_nodes": 6, "tol": 1e-10, "max_iter": 30, "verify_ev": False},
    "defaults": {"trade_cost_change": -0.05},
    "runs": [{"name": "F-cut", "importer": "F", "household": {"gamma": 2.0, "n_a": 20}}],
}
BATCH_FIELDS = [
    ("name", None),
    *[("options", k) for k in ("n_nodes", "tol", "max_iter", "verify_ev", "workers", "welfare")],
    ("options", "unknown"),
    *[("run", k) for k in ("name", "importer", "trade_cost_change", "recalibrate_beta")],
    *[("household", k) for k in ("gamma", "sigma_eps", "psi_slope", "phi", "a_max", "n_a")],
    ("household", "beta"),
]


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    (d / "world.toml").write_text(small_toml())
    return d


def _batch_with(field, value) -> dict:
    doc = copy.deepcopy(BASE_BATCH)
    table, key = field
    if table == "name":
        doc["name"] = value
    elif table == "run":
        doc["runs"][0][key] = value
    elif table == "household":
        doc["runs"][0]["household"][key] = value
    else:
        doc[table][key] = value
    return doc


@SETTINGS
@given(field=st.sampled_from(BATCH_FIELDS), value=VALUES)
def test_generated_batches_load_or_fail_in_one_line(batch_dir, field, value):
    doc = _batch_with(field, value)
    try:
        spec = loads_batch(to_toml(doc), source="gen.toml", base_dir=batch_dir)
    except ParameterError as err:
        msg = _one_line(err)
        named = field[1] or field[0]
        assert named in msg or (named == "importer" and "country" in msg), msg
        return
    assert isinstance(spec, BatchSpec)
    run = spec.runs[0]
    if field[0] == "household":  # accepted values are kept as written, not coerced
        assert run.household[field[1]] == value and type(run.household[field[1]]) is type(value)


@pytest.mark.parametrize(
    "field, value, piece",
    [
        (("options", "n_nodes"), 0, "n_nodes = 0"),  # moved welfare gains by ~10%
        (("options", "tol"), 1e6, "tol = 1000000.0"),
        (("options", "tol"), float("nan"), "tol = nan"),
        (("household", "n_a"), 20.7, "n_a = 20.7"),  # was coerced to 20
        (("household", "gamma"), "2", "gamma = '2'"),  # was coerced to 2
        (("household", "gamma"), True, "gamma = True"),
        (("options", "max_iter"), "30", "max_iter = '30'"),  # raised TypeError
        (("run", "name"), "../../x", "name = '../../x'"),
        (("name", None), "a/b", "name = 'a/b'"),
    ],
)
def test_batch_regressions(batch_dir, field, value, piece):
    with pytest.raises(ParameterError) as err:
        loads_batch(to_toml(_batch_with(field, value)), source="gen.toml", base_dir=batch_dir)
    assert piece in _one_line(err.value)


# ----------------------------------------------------------------------------- the API

HOUSEHOLD_FIELDS = [
    "gamma",
    "sigma_eps",
    "psi_slope",
    "beta",
    "phi",
    "a_max",
    "n_a",
    "rho_perm",
    "var_perm",
    "n_perm",
    "var_iid",
    "n_iid",
]


@SETTINGS
@given(field=st.sampled_from(HOUSEHOLD_FIELDS), value=VALUES)
def test_household_fields(field, value):
    try:
        hh = Household(**{field: value})
    except ParameterError as err:
        assert _one_line(err).startswith(f"{field} = ")
        return
    got = getattr(hh, field)
    assert not isinstance(got, (bool, str, list))
    assert math.isfinite(got)
    if field in ("n_a", "n_perm", "n_iid"):
        assert isinstance(got, int)


@SETTINGS
@given(
    field=st.sampled_from(["countries", "tfp", "labor", "d", "tariffs", "financial"]),
    value=VALUES,
)
def test_world_fields(field, value):
    kw = dict(countries=["H", "F", "G"], tfp=[1.0, 0.9, 1.1], labor=[1.0, 0.7, 0.5], d=D3)
    kw[field] = value
    try:
        World(**kw)
    except ParameterError as err:
        msg = _one_line(err)
        names = {"d": "trade_costs"}.get(field, field)
        assert names in msg or "countries" in msg, msg


SOLVER_FIELDS = [
    "tol",
    "max_iter",
    "hh_tol",
    "hh_max_iter",
    "jac_tol",
    "method",
    "coarse_n_a",
    "predict",
    "direction_cost",
    "inexact",
]


@SETTINGS
@given(field=st.sampled_from(SOLVER_FIELDS), value=VALUES)
def test_solver_options(field, value):
    try:
        SolverOptions(**{field: value})
    except ParameterError as err:
        assert field in _one_line(err)


EV_FIELDS = ["n_nodes", "verify", "tol", "hh_tol", "hh_max_iter", "node_batch", "lam_tol"]


@SETTINGS
@given(field=st.sampled_from(EV_FIELDS), value=VALUES)
def test_ev_options(field, value):
    try:
        EVOptions(**{field: value})
    except ParameterError as err:
        assert field in _one_line(err)


def test_ev_regression_n_nodes():
    """n_nodes 0 (no node besides lambda = 1) moved welfare gains by about 10%."""
    from hatrade.welfare.ev import equivalent_variation

    for n in (0, 1, 2, -3, 3.0, True):
        with pytest.raises(ParameterError, match="n_nodes"):
            equivalent_variation(None, None, "H", n_nodes=n)  # refused before any work
    assert EVOptions(n_nodes=3).n_nodes == 3


SCENARIO_KEYS = [
    "name",
    "importer",
    "exporter",
    "trade_cost_change",
    "tariff_change",
    "all_pairs",
    "allow_d_below_one",
]


@SETTINGS
@given(field=st.sampled_from(SCENARIO_KEYS), value=VALUES)
def test_scenario_from_dict(field, value):
    try:
        Scenario.from_dict({"importer": "F", field: value})
    except ParameterError as err:
        _one_line(err)


def test_identifier_regressions():
    with pytest.raises(ParameterError, match=r"countries\[0\] = 'H/\.\./\.\./x'"):
        World(countries=["H/../../x", "F"], tfp=[1, 1], labor=[1, 1], d=[[1, 2], [2, 1]])
    for bad in ("", "..", "a/b", "a..b", " H", "H\n", 5, None, "x" * 65):
        with pytest.raises(ParameterError):
            World(countries=[bad], tfp=[1], labor=[1], d=[[1]])
    for good in ("H", "USA", "country_2", "EU-27", "a.b"):
        assert World(countries=[good], tfp=[1], labor=[1], d=[[1]]).countries == (good,)


@pytest.mark.parametrize(
    "kw, piece",
    [
        ({"tol": float("nan")}, "tol = nan"),  # `hatrade calibrate --tol nan` was accepted
        ({"tol": 1e6}, "tol = 1000000.0"),
        ({"max_iter": 0}, "max_iter = 0"),
        ({"max_iter": 2.5}, "max_iter = 2.5"),
        ({"R": float("inf")}, "R = inf"),
        ({"beta_guess": 1.5}, "beta_guess = 1.5"),
    ],
)
def test_calibrate_options_refused_before_any_work(kw, piece):
    from hatrade.calibration.calibrate import calibrate
    from hatrade.calibration.grid import calibration_grid

    with pytest.raises(ParameterError) as err:
        calibrate([0.0] * 46, Household(), **kw)
    assert piece in _one_line(err.value)
    with pytest.raises(ParameterError, match=piece.split(" = ")[0]):
        calibration_grid(["gamma=1.5"], [0.0] * 46, Household(), "/nonexistent/grid", **kw)
