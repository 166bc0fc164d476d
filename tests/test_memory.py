"""Memory estimates: oversized runs are refused before they start (issue 16, class 5)."""

from __future__ import annotations

import pytest

import hatrade
from hatrade.core.errors import ParameterError
from hatrade.core.memory import (
    FIXED_BYTES,
    MemoryEstimateError,
    available_memory,
    check_memory,
    check_world_memory,
    estimate_bytes,
    estimate_simulation_bytes,
)
from hatrade.io.config import loads_config
from smallworld import small_household, small_toml, small_world


def test_estimate_grows_with_every_size():
    base = estimate_bytes(3, 200, 10)  # above 40 M points: no dense transition blocks
    assert base > FIXED_BYTES
    assert estimate_bytes(6, 200, 10) > base
    assert estimate_bytes(3, 400, 10) > base
    assert estimate_bytes(3, 200, 20) > base
    assert estimate_bytes(3, 200, 10, directions=0) < base
    # below 40 M points the dense blocks (Nz, Na, Na) per country count too
    assert estimate_bytes(3, 100, 10) > estimate_bytes(3, 100, 10, directions=0)
    assert estimate_simulation_bytes(10**6, 3, 10) > estimate_simulation_bytes(10**3, 3, 10)


def test_estimate_matches_the_measured_buffers():
    """XLA's buffers (memory_analysis of the compiled programs, see core/memory.py): a
    3-country world with Nz = 10 at n_a = 1600 needed 25 MB for the household solve and
    233 MB for the block Jacobian; the estimate must cover both, within a small factor."""
    arrays = estimate_bytes(3, 1600, 10) - FIXED_BYTES
    assert 233e6 <= arrays <= 3 * 233e6


def test_check_memory_refuses_with_estimate_and_limit(monkeypatch):
    monkeypatch.delenv("HATRADE_MEMORY_LIMIT", raising=False)
    check_memory(10, "a tiny run", limit=100)
    with pytest.raises(MemoryEstimateError) as err:
        check_memory(5 * 2**30, "a big run", limit=2**30)
    msg = str(err.value)
    assert "\n" not in msg and "a big run" in msg and "5.0 GiB" in msg and "1.0 GiB" in msg
    assert isinstance(err.value, ParameterError)
    monkeypatch.setenv("HATRADE_MEMORY_LIMIT", str(2**30))
    with pytest.raises(MemoryEstimateError):
        check_memory(5 * 2**30, "a big run")
    monkeypatch.setenv("HATRADE_MEMORY_LIMIT", "0")  # off
    check_memory(10**18, "anything")
    monkeypatch.setenv("HATRADE_MEMORY_LIMIT", "lots")
    with pytest.raises(ParameterError, match="HATRADE_MEMORY_LIMIT"):
        check_memory(1, "anything")


def test_available_memory_is_known_here():
    avail = available_memory()
    assert avail is None or avail > 0


def test_huge_world_refused_before_any_work(monkeypatch):
    monkeypatch.delenv("HATRADE_MEMORY_LIMIT", raising=False)
    with pytest.raises(MemoryEstimateError, match="n_a = 100000000"):
        check_world_memory(3, 10**8, 2)
    hh = small_household(n_a=10**8)
    with pytest.raises(MemoryEstimateError, match="GiB"):
        hatrade.solve_equilibrium(small_world(), hh, solve_for="R", R_guess=1.02)
    toml = small_toml().replace("n_a = 20", "n_a = 100000000")
    with pytest.raises(ParameterError, match=r"\[household\] n_a.*GiB"):
        loads_config(toml, source="big.toml")
    # the small world passes
    assert loads_config(small_toml()).household.n_a == 20


def test_huge_simulation_refused_before_any_work(monkeypatch):
    from types import SimpleNamespace

    import numpy as np

    from hatrade.analysis.cross_section import simulate_households

    monkeypatch.setenv("HATRADE_MEMORY_LIMIT", str(2**30))
    eq = SimpleNamespace(world=SimpleNamespace(M=3), income=SimpleNamespace(z=np.ones(10)))
    with pytest.raises(MemoryEstimateError, match="n = 1000000000 households"):
        simulate_households(eq, "H", n=10**9)


def test_jacobian_directions_in_chunks_that_fit(monkeypatch):
    """Chunking (issue 19): the estimate falls with the chunk (unchunked = the old estimate),
    direction_chunk picks the largest chunk that fits, and a world is refused only when
    one direction at a time does not fit, with that estimate."""
    from hatrade.core.memory import direction_chunk

    monkeypatch.delenv("HATRADE_MEMORY_LIMIT", raising=False)
    D = 100 + 5
    whole = estimate_bytes(100, 100, 10)
    assert estimate_bytes(100, 100, 10, chunk=D) == whole
    by_chunk = [estimate_bytes(100, 100, 10, chunk=c) for c in (1, 10, 50, D)]
    assert by_chunk == sorted(by_chunk) and by_chunk[0] < whole / 3
    limit = estimate_bytes(100, 100, 10, chunk=10)
    assert direction_chunk(100, 100, 10, limit=limit) == 10
    assert direction_chunk(100, 100, 10, limit=limit - 1) == 9
    assert direction_chunk(3, 20, 2, 7, limit=10**12) == 7  # fits: all at once
    monkeypatch.setenv("HATRADE_MEMORY_LIMIT", "0")
    assert direction_chunk(100, 100, 10) == D  # no check
    monkeypatch.delenv("HATRADE_MEMORY_LIMIT")
    check_world_memory(100, 100, 10, limit=by_chunk[0])  # fits in chunks of one
    with pytest.raises(MemoryEstimateError, match="one direction at a time") as err:
        direction_chunk(100, 100, 10, limit=by_chunk[0] - 1)
    assert f"{by_chunk[0] / 2**30:.1f} GiB" in str(err.value)
