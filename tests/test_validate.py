"""Shared checks of TOML input tables (hatrade.io.validate)."""

import pytest

from hatrade.io.validate import (
    BOOLEAN,
    FRACTION,
    NUMBER,
    Rule,
    check_keys,
    check_table,
    integer,
    loads_toml,
    option_problems,
)


class Boom(ValueError):
    pass


def test_loads_toml_parses_and_names_the_source():
    assert loads_toml("a = 1\n[options]\ntol = 0.5\n", "f.toml", Boom) == {
        "a": 1,
        "options": {"tol": 0.5},
    }
    with pytest.raises(Boom, match=r"^f\.toml: not valid TOML: .*!$"):
        loads_toml("a = = 1", "f.toml", Boom, end="!")


def test_check_table_missing_wrong_type_and_unknown_keys():
    assert check_table(None, ("tol",), "s: [options]", Boom) == {}
    assert check_table({"tol": 1e-3}, ("tol",), "s: [options]", Boom) == {"tol": 1e-3}
    with pytest.raises(Boom, match=r"^s: \[options\] must be a table\.$"):
        check_table([1, 2], ("tol",), "s: [options]", Boom)
    with pytest.raises(Boom) as info:
        check_table({"tol": 1, "zz": 2, "aa": 3}, ("tol", "max_iter"), "s: [options]", Boom)
    assert str(info.value) == ("s: [options]: unknown key(s) ['aa', 'zz']; allowed: tol, max_iter.")


def test_check_keys_end():
    check_keys({"gamma": 1}, ("gamma",), "w", Boom)
    with pytest.raises(Boom) as info:
        check_keys({"x": 1}, ("gamma", "phi"), "w: household", Boom, end="")
    assert str(info.value) == "w: household: unknown key(s) ['x']; allowed: gamma, phi"


@pytest.mark.parametrize(
    "value, ok",
    [
        (0.5, True),
        (1e-12, True),
        (1, False),
        (0, False),
        (True, False),
        ("0.1", False),
        (-0.1, False),
    ],
)
def test_fraction(value, ok):
    assert (FRACTION.problem("tol", value) is None) is ok


@pytest.mark.parametrize(
    "value, ok", [(0, True), (5, True), (-1, False), (1.0, False), (True, False), (None, False)]
)
def test_integer(value, ok):
    assert (integer(0).problem("n", value) is None) is ok


def test_boolean_optional_and_messages():
    assert BOOLEAN.problem("flag", False) is None
    assert BOOLEAN.problem("flag", 1) == "flag = 1: must be true or false"
    assert integer(1).or_none().problem("workers", None) is None
    assert integer(1).or_none().problem("workers", 0) == "workers = 0: must be an integer >= 1"
    assert FRACTION.problem("tol", 2) == "tol = 2: must be a number in (0, 1)"


def test_option_problems_in_rule_order_and_only_present_keys():
    rules = {"tol": FRACTION, "max_iter": integer(1), "flag": BOOLEAN}
    assert option_problems({}, rules) == []
    assert option_problems({"flag": "yes", "tol": 3, "other": object()}, rules) == [
        "tol = 3: must be a number in (0, 1)",
        "flag = 'yes': must be true or false",
    ]


@pytest.mark.parametrize(
    "value, ok",
    [(1, True), (0.5, True), (-3.0, True), (True, False), ("2", False), (None, False)]
    + [(float("nan"), False), (float("inf"), False), ([1], False)],
)
def test_number_rule_does_not_coerce(value, ok):
    assert NUMBER.ok(value) is ok
    assert (FRACTION.ok(value) and 0 < value < 1) is FRACTION.ok(value)


def test_rule_from_the_api_check_has_the_api_range():
    from hatrade.solve.options import solve_option_problem
    from hatrade.welfare.inversion import ev_option_problem

    tol = Rule.from_problem(solve_option_problem, "tol")
    assert tol.need == "a finite number in (0, 0.1]"
    assert tol.problem("tol", 1e-10) is None
    assert tol.problem("tol", 1e6) == "tol = 1000000.0: must be a finite number in (0, 0.1]"
    n_nodes = Rule.from_problem(ev_option_problem, "n_nodes")
    assert n_nodes.problem("n_nodes", 0) == "n_nodes = 0: must be an integer >= 3"
    assert n_nodes.problem("n_nodes", 8) is None
    assert n_nodes.problem("n_nodes", 8.0) is not None


def test_check_identifier():
    from hatrade.core.errors import ParameterError, check_identifier

    for good in ("H", "USA", "run-1", "sigma_eps-0.25", "a+b", "x" * 64):
        assert check_identifier(good, "name") == good
    for bad in ("", "..", "a/b", "H/../../x", "a..b", ".hidden", "-x", "a b", "x" * 65, 5):
        with pytest.raises(ParameterError, match=r"^name = .* is not allowed: it must be 1-64"):
            check_identifier(bad, "name")
