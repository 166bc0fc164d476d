"""The opt-in ``transitions`` stage of ``hatrade replicate`` (issue 17, beyond the paper), on
a tiny quick setup: three countries, the baseline model only, 20 asset points, T = 150 (the
path has not settled to 1e-6 by period 120 there). The runs take about a minute on two cores
(two new equilibria, two transitions, four EV solves), so they are marked slow; the opt-in
check is fast."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hatrade.io.cache import Cache
from hatrade.replicate import paper_setup, replicate
from hatrade.replicate.stages import ALL_STAGE_NAMES, OPTIONAL_STAGES, STAGE_NAMES

T = 150


def _setup():
    return paper_setup(
        quick=True,
        n_a=20,
        countries=["USA", "CAN", "JPN"],
        household={"n_perm": 3, "n_iid": 1},
        ev_nodes=4,
        models=("baseline",),
        transition_periods=T,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cold run of the equilibrium and transitions stages, then a warm one whose
    transition solver fails if it is called (everything loads from the cache)."""
    import hatrade.analysis.transition

    base = tmp_path_factory.mktemp("replicate-transitions")
    cache = base / "cache"
    stages = ["equilibrium", "transitions"]
    cold = replicate(base / "cold", setup=_setup(), cache=Cache(cache), stages=stages)

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("run_transition was called in a run that should load it")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hatrade.analysis.transition, "run_transition", boom)
        warm = replicate(base / "warm", setup=_setup(), cache=Cache(cache), stages=stages)
    return cold, warm


def test_transitions_stage_is_opt_in():
    assert "transitions" in OPTIONAL_STAGES and "transitions" in ALL_STAGE_NAMES
    assert "transitions" not in STAGE_NAMES
    from hatrade.cli.replicate import _stages

    assert _stages(False) == list(STAGE_NAMES)
    assert _stages(True) == list(STAGE_NAMES) + ["transitions"]
    with pytest.raises(Exception, match="transition_periods"):
        paper_setup(quick=True, transition_periods=1)


@pytest.mark.slow
def test_transitions_stage_reports_both_experiments(runs):
    cold, _ = runs
    st = {s.name: s for s in cold.stages}
    assert st["transitions"].status == "ok", st["transitions"].error
    nums = cold.numbers["transitions"]
    assert set(nums) == {"unilateral", "global"}
    for kind, n in nums.items():
        assert n["periods"] == T and n["residual"] < 1e-8
        for key in ("transition", "steady_state"):
            assert set(n[key]["quintile_gain_percent"]) == {"Q1", "Q2", "Q3", "Q4", "Q5"}
            assert math.isfinite(n[key]["mean_gain_percent"])
        folder = cold.out / "transitions" / kind
        s = json.loads((folder / "summary.json").read_text())
        assert s["welfare"]["USA"]["transition"] == n["transition"]
        paths = pd.read_csv(folder / "paths.csv")
        assert len(paths) == 3 * T
    table = pd.read_csv(cold.out / "transitions" / "welfare_summary.csv")
    assert list(table["experiment"]) == ["unilateral"] * 2 + ["global"] * 2
    html = (cold.out / "report.html").read_text()
    assert "tab-transitions-welfare" in html and "beyond the paper" in html
    doc = json.loads((cold.out / "replicate.json").read_text())
    assert doc["numbers"]["transitions"]["global"]["periods"] == T


@pytest.mark.slow
def test_transitions_stage_loads_from_the_cache(runs):
    cold, warm = runs
    st = {s.name: s for s in warm.stages}
    assert st["transitions"].status == "ok", st["transitions"].error
    assert st["transitions"].cache["miss"] == 0 and st["transitions"].cache["hit"] == 2
    assert warm.numbers["transitions"] == cold.numbers["transitions"]
