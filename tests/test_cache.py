"""The results cache (issue 6): keys, atomic entries, verification, recomputation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hatrade import Household, World, evaluate
from hatrade.io.cache import Cache, CacheError, decode_bundle, default_cache_dir, encode_bundle
from hatrade.io.cache_entry import seal
from hatrade.io.equilibrium_store import cached_equilibrium
from hatrade.io.fingerprint import FingerprintError, canonical, code_revision, fingerprint


def _world(d=1.3):
    return World(countries=("AAA", "BBB"), tfp=[1.0, 0.9], labor=[1.0, 0.6], d=[[1.0, d], [d, 1.0]])


# ----------------------------------------------------------------------------- keys


def test_key_is_deterministic_and_sensitive():
    hh = Household(n_a=20, n_perm=3)
    k1 = fingerprint("equilibrium", {"world": _world(), "household": hh, "tol": 1e-10})
    k2 = fingerprint(
        "equilibrium", {"tol": 1e-10, "household": Household(n_a=20, n_perm=3), "world": _world()}
    )
    assert k1 == k2 and len(k1) == 64
    # any change to anything that determines the result changes the key
    others = [
        {"world": _world(1.3 + 1e-15), "household": hh, "tol": 1e-10},
        {"world": _world(), "household": hh.replace(gamma=1.4500000001), "tol": 1e-10},
        {"world": _world(), "household": hh.replace(n_a=21), "tol": 1e-10},
        {"world": _world(), "household": hh, "tol": 1e-9},
        {"world": _world().replace(financial="autarky"), "household": hh, "tol": 1e-10},
    ]
    keys = {fingerprint("equilibrium", o) for o in others}
    assert k1 not in keys and len(keys) == len(others)
    assert fingerprint("welfare", {"world": _world(), "household": hh, "tol": 1e-10}) != k1


def test_key_includes_package_version(monkeypatch):
    import hatrade

    k1 = fingerprint("x", {"a": 1})
    monkeypatch.setattr(hatrade, "__version__", "999.0")
    assert fingerprint("x", {"a": 1}) != k1


def test_canonical_arrays_by_content_and_rejects_unknown_types():
    a = np.arange(6.0).reshape(2, 3)
    assert canonical(a) == canonical(a.copy(order="F"))
    assert canonical(a) != canonical(a.T)  # same bytes in another shape
    assert canonical(np.float32(0.5)) == 0.5
    assert canonical({"b": 1, "a": [1.0, None]}) == {"b": 1, "a": [1.0, None]}
    assert canonical(float("nan")) == {"__float__": "nan"}
    with pytest.raises(FingerprintError, match="type object"):
        canonical(object())


def test_code_revision_is_a_stable_hash_of_the_numerical_source():
    rev = code_revision()
    assert len(rev) == 64 and set(rev) <= set("0123456789abcdef")
    assert code_revision() == rev  # computed once per process


def test_key_includes_code_revision(monkeypatch):
    import hatrade.io.fingerprint as fp

    k1 = fingerprint("x", {"a": 1})
    monkeypatch.setattr(fp, "code_revision", lambda: "0" * 64)
    assert fingerprint("x", {"a": 1}) != k1


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("HATRADE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert Cache().root == tmp_path / "c"
    monkeypatch.delenv("HATRADE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "hatrade"


# ----------------------------------------------------------------------------- bundles


def test_bundle_roundtrip():
    df = pd.DataFrame(
        {"country": ["AAA", "BBB"], "x": [1.5, np.nan], "n": [1, 2], "flag": [True, False]}
    )
    indexed = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.Index(["p", "q"], name="coef"))
    ds = xr.Dataset(
        {"th": (("partner", "a"), np.ones((2, 3)), {"description": "d"})},
        coords={"partner": ["X", "Y"], "a": np.arange(3)},
        attrs={"country": "Z"},
    )
    b = {
        "table": df,
        "indexed": indexed,
        "arr": np.arange(4.0),
        "s": pd.Series([1.0, 2.0], index=["u", "v"], name="w"),
        "ds": ds,
        "summary": {"mean": 1.25, "q": [1, 2], "inf": float("inf"), "none": None},
    }
    arrays, meta = encode_bundle(b)
    json.dumps(meta)  # JSON-ready
    out = decode_bundle(arrays, meta)
    pd.testing.assert_frame_equal(out["table"], df)
    pd.testing.assert_frame_equal(out["indexed"], indexed)
    np.testing.assert_array_equal(out["arr"], b["arr"])
    pd.testing.assert_series_equal(out["s"], b["s"])
    xr.testing.assert_identical(out["ds"], ds)
    assert out["summary"] == {"mean": 1.25, "q": [1, 2], "inf": float("inf"), "none": None}


def test_bundle_rejects_objects():
    with pytest.raises(CacheError):
        encode_bundle({"x": pd.DataFrame({"a": [object(), 1]})})


# ----------------------------------------------------------------------------- entries


def _compute_counter():
    calls = []

    def compute():
        calls.append(1)
        return {"table": pd.DataFrame({"a": [1.0, 2.0]}), "summary": {"n": len(calls)}}

    return calls, compute


def test_memo_stores_and_loads(tmp_path):
    cache = Cache(tmp_path)
    calls, compute = _compute_counter()
    r1, hit1 = cache.memo("thing", {"x": 1}, compute, label="one")
    r2, hit2 = cache.memo("thing", {"x": 1}, compute, label="one")
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert r2["summary"] == {"n": 1}
    r3, hit3 = cache.memo("thing", {"x": 2}, compute)
    assert not hit3 and len(calls) == 2
    assert cache.stats["hit:thing"] == 1 and cache.stats["miss:thing"] == 2
    assert len(cache.entries("thing")) == 2
    assert not list((tmp_path / "thing").glob(".*.tmp"))  # no temporary files left


def test_no_cache_recomputes_and_refreshes(tmp_path):
    calls, compute = _compute_counter()
    Cache(tmp_path).memo("thing", {"x": 1}, compute)
    r, hit = Cache(tmp_path, read=False).memo("thing", {"x": 1}, compute)
    assert not hit and len(calls) == 2 and r["summary"] == {"n": 2}
    r, hit = Cache(tmp_path).memo("thing", {"x": 1}, compute)
    assert hit and r["summary"] == {"n": 2}  # the fresh result replaced the old one


def _entry_paths(cache, kind="thing"):
    (meta,) = list((cache.root / kind).glob("*.json"))
    return meta.with_suffix(".npz"), meta


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip", "drop_meta", "drop_npz", "bad_json", "shape", "other_format", "meta_json"],
)
def test_corrupt_entry_is_recomputed_never_used(tmp_path, damage):
    cache = Cache(tmp_path)
    calls, compute = _compute_counter()
    cache.memo("thing", {"x": 1}, compute)
    npz, meta = _entry_paths(cache)
    if damage == "truncate":  # a partial write of the arrays
        npz.write_bytes(npz.read_bytes()[:-50])
    elif damage == "flip":
        b = bytearray(npz.read_bytes())
        b[len(b) // 2] ^= 0xFF
        npz.write_bytes(bytes(b))
    elif damage == "drop_meta":  # interrupted before the commit
        meta.unlink()
    elif damage == "drop_npz":
        npz.unlink()
    elif damage == "bad_json":
        meta.write_text(meta.read_text()[:40])
    elif damage == "shape":  # recorded shapes disagree with the arrays (sealed again)
        m = json.loads(meta.read_text())["entry"]
        name = next(iter(m["arrays"]))
        m["arrays"][name]["shape"] = [99]
        meta.write_bytes(seal(m))
    elif damage == "other_format":
        m = json.loads(meta.read_text())["entry"]
        m["format"] = -1
        meta.write_bytes(seal(m))
    elif damage == "meta_json":  # one digit of the result's own metadata edited
        text = meta.read_text()
        assert text.count('"n": 1') == 1
        meta.write_text(text.replace('"n": 1', '"n": 7'))
    fresh = Cache(tmp_path)
    r, hit = fresh.memo("thing", {"x": 1}, compute)
    assert not hit and len(calls) == 2 and r["summary"] == {"n": 2}
    assert fresh.events[-1]["outcome"] == "corrupt"
    assert fresh.stats["corrupt:thing"] == 1
    # the recomputed entry is valid again
    r, hit = Cache(tmp_path).memo("thing", {"x": 1}, compute)
    assert hit and len(calls) == 2


def test_load_reports_corruption(tmp_path):
    cache = Cache(tmp_path)
    _, compute = _compute_counter()
    cache.memo("thing", {"x": 1}, compute)
    npz, meta = _entry_paths(cache)
    npz.write_bytes(b"not a zip")
    key = meta.stem
    fresh = Cache(tmp_path)
    assert fresh.load("thing", key) is None
    assert fresh.stats["corrupt:thing"] == 1
    assert not npz.exists() and not meta.exists()  # removed, so it is never used


def test_invalid_kind_and_key(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(CacheError, match="kind"):
        cache.load("../x", "0" * 64)
    with pytest.raises(CacheError, match="key"):
        cache.load("thing", "abc")


def test_clear(tmp_path):
    cache = Cache(tmp_path)
    _, compute = _compute_counter()
    cache.memo("thing", {"x": 1}, compute)
    cache.memo("other", {"x": 1}, compute)
    assert cache.clear("thing") == 2
    assert cache.entries("thing") == [] and len(cache.entries()) == 1


# ----------------------------------------------------------------------------- equilibria


@pytest.fixture(scope="module")
def small_eq():
    """Households of a two-country world at given prices (a cheap stand-in for a solve:
    the cache stores any Equilibrium the same way)."""
    world, hh = _world(), Household(n_a=20, n_perm=3, n_iid=1, beta=0.93)
    return world, hh, evaluate(world, hh, [1.0, 1.0], R=1.01)


def test_cached_equilibrium_roundtrip(tmp_path, small_eq):
    world, hh, eq = small_eq
    calls = []

    def solve():
        calls.append(1)
        return eq

    opts = {"evaluate": True, "wages": [1.0, 1.0], "R": 1.01}
    eq1, hit1 = cached_equilibrium(Cache(tmp_path), world, hh, solve, options=opts)
    eq2, hit2 = cached_equilibrium(Cache(tmp_path), world, hh, solve, options=opts)
    assert (hit1, hit2) == (False, True) and len(calls) == 1 and eq1 is eq
    for a, b in (
        (eq2.prices.w, eq.prices.w),
        (eq2.prices.R, eq.prices.R),
        (eq2.p, eq.p),
        (eq2.lam, eq.lam),
        (eq2.a_grid, eq.a_grid),
        (eq2.state.c, eq.state.c),
        (eq2.trade_shares, eq.trade_shares),
        (eq2.aggregates["A"], eq.aggregates["A"]),
    ):
        np.testing.assert_array_equal(a, b)
    for f in ("c", "a_p", "v", "pi", "V"):
        np.testing.assert_array_equal(getattr(eq2.policies, f), getattr(eq.policies, f))
    assert eq2.beta == eq.beta and eq2.R == eq.R and eq2.countries == eq.countries
    assert eq2.household is hh and eq2.world is world
    # the loaded state is a valid warm start: the households are solved at once
    eq3 = evaluate(world, hh, [1.0, 1.0], R=1.01, state=eq2.state)
    assert np.max(eq3.hh_iterations) <= 2
    np.testing.assert_allclose(eq3.policies.c, eq.policies.c, rtol=1e-8)
    # other options are another result
    _, hit4 = cached_equilibrium(Cache(tmp_path), world, hh, solve, options={**opts, "R": 1.02})
    assert not hit4 and len(calls) == 2


def test_cached_equilibrium_checks_shapes(tmp_path, small_eq):
    """An entry whose arrays do not fit the world/household is recomputed, not used."""
    from hatrade.io.equilibrium_store import equilibrium_inputs, equilibrium_to_arrays

    world, hh, eq = small_eq
    cache = Cache(tmp_path)
    opts = {"evaluate": True}
    key = fingerprint("equilibrium", equilibrium_inputs(world, hh, **opts))
    arrays, meta = equilibrium_to_arrays(eq)
    arrays["lam"] = arrays["lam"][:, :-1]  # stored under the right key, wrong shape
    cache.store("equilibrium", key, arrays, meta)
    calls = []

    def solve():
        calls.append(1)
        return eq

    got, hit = cached_equilibrium(cache, world, hh, solve, options=opts)
    assert not hit and calls == [1] and got is eq
    assert cache.stats["corrupt:equilibrium"] == 1
    # and an entry for another world of the same key inputs is refused (countries differ)
    other = world.replace(countries=("CCC", "DDD"))
    arrays, meta = equilibrium_to_arrays(eq)
    key2 = fingerprint("equilibrium", equilibrium_inputs(other, hh, **opts))
    cache.store("equilibrium", key2, arrays, meta)
    got, hit = cached_equilibrium(cache, other, hh, solve, options=opts)
    assert not hit and calls == [1, 1]


def _labeled(eq, solve_for="R"):
    """``eq`` with a labeled Jacobian for its world (solving for ``solve_for``) and solve
    diagnostics, as :func:`hatrade.solve.equilibrium.solve_equilibrium` returns them."""
    import dataclasses

    from hatrade.core.markets import Layout
    from hatrade.solve.equilibrium import EquilibriumJacobian

    layout = Layout(
        M=eq.world.M,
        financial=eq.world.financial,
        solve_for=solve_for,
        tariffs=False,
        R_fixed=1.01,
        beta_fixed=0.93,
    )
    n = layout.n
    J = np.arange(1.0, n * n + 1).reshape(n, n) + 10 * np.eye(n)
    jac = EquilibriumJacobian(
        J, layout.unknown_names(eq.countries), layout.residual_names(eq.countries)
    )
    return dataclasses.replace(
        eq,
        jacobian=jac,
        jacobians=2,
        jacobian_directions=7,
        seconds=4.5,
        seconds_household=1.25,
        seconds_jacobian=2.75,
    ), layout


def test_cached_equilibrium_keeps_jacobian_labels_and_diagnostics(tmp_path, small_eq):
    from hatrade.core.markets import Layout
    from hatrade.core.params import ParameterError
    from hatrade.solve.equilibrium import EquilibriumJacobian, _checked_jacobian

    world, hh, eq0 = small_eq
    eq, layout = _labeled(eq0)
    opts = {"solve_for": "R", "beta": 0.93}
    cached_equilibrium(Cache(tmp_path), world, hh, lambda: eq, options=opts)
    got, hit = cached_equilibrium(Cache(tmp_path), world, hh, lambda: 1 / 0, options=opts)
    assert hit
    assert isinstance(got.jacobian, EquilibriumJacobian)
    assert got.jacobian.unknowns == ("w_AAA", "R") == eq.jacobian.unknowns
    assert got.jacobian.residuals == ("goods_BBB", "bonds") == eq.jacobian.residuals
    np.testing.assert_array_equal(np.asarray(got.jacobian), np.asarray(eq.jacobian))
    for f in (
        "jacobians",
        "jacobian_directions",
        "seconds",
        "seconds_household",
        "seconds_jacobian",
    ):
        assert getattr(got, f) == getattr(eq, f), f
    # the loaded Jacobian is accepted by a solve with the same unknowns ...
    J = _checked_jacobian(got.jacobian, layout, world.countries)
    np.testing.assert_array_equal(J, np.asarray(eq.jacobian))
    # ... and, being labeled, refused by one solving for other unknowns (same shape)
    other = Layout(
        M=2,
        financial="globalization",
        solve_for="beta",
        tariffs=False,
        R_fixed=1.01,
        beta_fixed=None,
    )
    with pytest.raises(ParameterError, match="unknowns"):
        _checked_jacobian(got.jacobian, other, world.countries)


def test_cached_equilibrium_unlabeled_and_mislabeled_jacobians(tmp_path, small_eq):
    """An unlabeled array comes back as an array; labels of another world are refused."""
    import dataclasses

    from hatrade.io.equilibrium_store import equilibrium_inputs, equilibrium_to_arrays

    world, hh, eq0 = small_eq
    eq, _ = _labeled(eq0)
    plain = dataclasses.replace(eq, jacobian=np.asarray(eq.jacobian))
    opts = {"solve_for": "R", "beta": 0.93}
    cache = Cache(tmp_path)
    cached_equilibrium(cache, world, hh, lambda: plain, options=opts)
    got, hit = cached_equilibrium(cache, world, hh, lambda: 1 / 0, options=opts)
    assert hit and type(got.jacobian) is np.ndarray
    np.testing.assert_array_equal(got.jacobian, plain.jacobian)

    arrays, meta = equilibrium_to_arrays(eq)
    meta["jacobian_labels"]["unknowns"] = ["w_XXX", "R"]
    key = fingerprint("equilibrium", equilibrium_inputs(world, hh, **{**opts, "n": 2}))
    cache.store("equilibrium", key, arrays, meta)
    got, hit = cached_equilibrium(cache, world, hh, lambda: eq, options={**opts, "n": 2})
    assert not hit and got is eq and cache.stats["corrupt:equilibrium"] == 1


def test_old_equilibrium_entry_is_stale_and_recomputed(tmp_path, small_eq, caplog):
    """Entries written before the Jacobian labels and timings were stored are not loaded
    with made-up defaults: they are removed, recomputed and rewritten."""
    from hatrade.io.equilibrium_store import equilibrium_inputs, equilibrium_to_arrays
    from hatrade.solve.equilibrium import EquilibriumJacobian

    world, hh, eq0 = small_eq
    eq, _ = _labeled(eq0)
    opts = {"solve_for": "R", "beta": 0.93}
    cache = Cache(tmp_path)
    key = fingerprint("equilibrium", equilibrium_inputs(world, hh, **opts))
    arrays, meta = equilibrium_to_arrays(eq)
    for f in (
        "content",
        "jacobian_labels",
        "jacobian_directions",
        "seconds_household",
        "seconds_jacobian",
    ):
        del meta[f]  # the layout of the first format-1 equilibrium entries
    cache.store("equilibrium", key, arrays, meta)
    calls = []

    def solve():
        calls.append(1)
        return eq

    with caplog.at_level("INFO", logger="hatrade.io.cache"):
        got, hit = cached_equilibrium(cache, world, hh, solve, options=opts)
    assert not hit and calls == [1] and got is eq
    assert cache.stats["stale:equilibrium"] == 1 and cache.stats["corrupt:equilibrium"] == 0
    assert cache.events[-1]["outcome"] == "stale"
    assert any("stale" in r.getMessage() for r in caplog.records)
    # the recomputed result replaced it: the next lookup loads it, labels and all
    got, hit = cached_equilibrium(cache, world, hh, solve, options=opts)
    assert hit and calls == [1] and isinstance(got.jacobian, EquilibriumJacobian)
    assert got.jacobian_directions == 7


def test_entry_of_another_code_revision_is_not_served(tmp_path, small_eq, monkeypatch):
    """A cache entry written by a different code revision is not served: the lookup
    misses and the equilibrium is solved again."""
    import hatrade.io.fingerprint as fp

    world, hh, eq = small_eq
    calls = []

    def solve():
        calls.append(1)
        return eq

    opts = {"evaluate": True, "wages": [1.0, 1.0], "R": 1.01}
    monkeypatch.setattr(fp, "code_revision", lambda: "a" * 64)
    _, hit = cached_equilibrium(Cache(tmp_path), world, hh, solve, options=opts)
    assert not hit and calls == [1]
    meta = json.loads(next((tmp_path / "equilibrium").glob("*.json")).read_text())["entry"]
    assert meta["code_revision"] == "a" * 64
    _, hit = cached_equilibrium(Cache(tmp_path), world, hh, solve, options=opts)
    assert hit and calls == [1]  # same code: served
    monkeypatch.setattr(fp, "code_revision", lambda: "b" * 64)  # the code changed
    cache = Cache(tmp_path)
    got, hit = cached_equilibrium(cache, world, hh, solve, options=opts)
    assert not hit and calls == [1, 1] and got is eq
    assert cache.stats["miss:equilibrium"] == 1 and cache.stats["hit:equilibrium"] == 0


def test_issue16_edited_digit_of_beta_is_not_served(tmp_path, small_eq, caplog):
    """Issue 16, class 1: one edited digit in a cached equilibrium's JSON (its beta) made a
    run report wrong welfare gains. The metadata is sealed by a checksum: the edited entry
    is reported, not served, recomputed, and the result is the true one."""
    world, hh, eq = small_eq
    opts = {"evaluate": True, "wages": [1.0, 1.0], "R": 1.01}
    cached_equilibrium(Cache(tmp_path), world, hh, lambda: eq, options=opts)
    (meta,) = (tmp_path / "equilibrium").glob("*.json")
    text = meta.read_text()
    stored = f'"beta": {eq.beta!r}'
    assert text.count(stored) == 1
    meta.write_text(text.replace(stored, f'"beta": {eq.beta + 0.01!r}'))
    calls = []

    def solve():
        calls.append(1)
        return eq

    cache = Cache(tmp_path)
    with caplog.at_level("WARNING", logger="hatrade.io.cache"):
        got, hit = cached_equilibrium(cache, world, hh, solve, options=opts)
    assert not hit and calls == [1] and got.beta == eq.beta
    assert cache.stats["corrupt:equilibrium"] == 1 and cache.events[-1]["outcome"] == "corrupt"
    assert any(
        "checksum" in r.getMessage() and meta.stem[:12] in r.getMessage() for r in caplog.records
    )
    # the recomputed entry replaced it and is served, with the true beta
    got, hit = cached_equilibrium(Cache(tmp_path), world, hh, solve, options=opts)
    assert hit and calls == [1] and got.beta == eq.beta


def test_format_2_entry_is_stale(tmp_path):
    """An entry of the previous format (metadata without a checksum) is recomputed and
    replaced, logged as stale rather than as damage."""
    cache = Cache(tmp_path)
    calls, compute = _compute_counter()
    cache.memo("thing", {"x": 1}, compute)
    npz, meta = _entry_paths(cache)
    doc = json.loads(meta.read_text())["entry"]
    doc["format"] = 2
    meta.write_text(json.dumps(doc))
    fresh = Cache(tmp_path)
    r, hit = fresh.memo("thing", {"x": 1}, compute)
    assert not hit and r["summary"] == {"n": 2}
    assert fresh.stats["stale:thing"] == 1 and fresh.stats["corrupt:thing"] == 0
    assert fresh.events[-1]["outcome"] == "stale"
    assert Cache(tmp_path).memo("thing", {"x": 1}, compute)[1]


def test_entries_lists_sealed_entries(tmp_path):
    cache = Cache(tmp_path)
    _, compute = _compute_counter()
    cache.memo("thing", {"x": 1}, compute, label="one")
    (e,) = cache.entries("thing")
    assert e["label"] == "one" and len(e["key"]) == 64 and e["size"] > 0
