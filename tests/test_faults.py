"""Fault injection (issue 16): damaged cache files, interrupted writes, read-only and full
file systems, two writers of one entry, atomic writes under errors.

Every test is fast (small data; property tests with bounded example counts). Faults are
injected by replacing the file operations of :mod:`hatrade.io.atomic` for the duration of
one write (:class:`Injector`); where ``mount -t tmpfs`` is allowed (root), a read-only and a
tiny (full) tmpfs are used as well.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hatrade
from hatrade import Household, World, evaluate
from hatrade.io import atomic
from hatrade.io.cache import Cache, decode_bundle, encode_bundle
from hatrade.io.cache_entry import LOCK_NAME
from hatrade.io.equilibrium_store import cached_equilibrium

KIND = "thing"
LOGGER = "hatrade.io.cache"
FAST = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _bundle(n: int, size: int = 3) -> dict:
    """A tiny result: an array and a summary, both carrying ``n``."""
    return {"x": np.arange(float(size)) + n, "summary": {"n": n, "ok": True}}


def _value(entry) -> int:
    """``n`` of a loaded bundle entry, checking that its arrays and metadata agree."""
    arrays, meta = entry
    b = decode_bundle(arrays, meta)
    n = b["summary"]["n"]
    np.testing.assert_array_equal(b["x"], np.arange(float(len(b["x"]))) + n)
    return n


def _files(root: Path, kind: str = KIND) -> list[str]:
    d = Path(root) / kind
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ----------------------------------------------------------------------------- injection


class _File:
    """A file object whose ``write`` is a point of the :class:`Injector`."""

    def __init__(self, fh, injector: "Injector"):
        self._fh = fh
        self.write = injector.point(fh.write)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)


class Injector:
    """Raise ``exc`` at call number ``at`` of the file operations of an atomic write
    (``open``, ``mkdir``, ``fdopen``, the file's ``write``, ``fsync``, ``chmod``,
    ``replace``: the module ``os`` is patched, so this includes the cache's lock file): just before the call or, with ``after``, just after it returned.
    ``at=None`` only counts the calls."""

    def __init__(self, at: int | None = None, exc: BaseException | None = None, after=False):
        self.at, self.exc, self.after = at, exc, after
        self.calls: list[str] = []
        self.fired = False

    def point(self, fn):
        def call(*args, **kwargs):
            k = len(self.calls)
            self.calls.append(getattr(fn, "__name__", "call"))
            if k == self.at and not self.after:
                self.fired = True
                raise self.exc
            try:
                return fn(*args, **kwargs)
            finally:
                if k == self.at and self.after:
                    self.fired = True
                    raise self.exc  # also when the call itself failed

        return call

    def run(self, write) -> bool:
        """Call ``write()`` with the fault installed: whether it raised the fault (an
        OSError may legitimately be absorbed, e.g. by ``mkdir(exist_ok=True)``)."""
        try:
            with self.installed():
                write()
        except (KeyboardInterrupt, OSError) as err:
            assert err is self.exc
            return True
        finally:
            assert self.fired, "the injection point was not reached"
        return False

    @contextlib.contextmanager
    def installed(self):
        real = {
            (atomic.os, "open"): os.open,
            (atomic.os, "mkdir"): os.mkdir,
            (atomic.os, "fsync"): os.fsync,
            (atomic.os, "chmod"): os.chmod,
            (atomic.os, "replace"): os.replace,
        }
        fdopen = os.fdopen
        try:
            for (mod, name), fn in real.items():
                setattr(mod, name, self.point(fn))
            atomic.os.fdopen = self.point(lambda *a, **k: _File(fdopen(*a, **k), self))
            yield self
        finally:
            for (mod, name), fn in real.items():
                setattr(mod, name, fn)
            atomic.os.fdopen = fdopen


def _count_calls(write) -> list[str]:
    """The injection points of ``write()``, in order."""
    with Injector().installed() as inj:
        write()
    return inj.calls


def _fault(draw_exc: bool):
    return KeyboardInterrupt() if draw_exc else OSError(errno.ENOSPC, "No space left on device")


# ----------------------------------------------------------------------------- (a) flipped bytes


def test_every_flipped_byte_of_an_entry_is_detected(tmp_path, caplog):
    """A changed bit at every byte of every file of an entry (the sealed metadata and the
    array archive; the lock file holds no data): the entry is refused and removed."""
    Cache(tmp_path).memo(KIND, {"x": 1}, lambda: _bundle(1))
    files = {p: p.read_bytes() for p in (tmp_path / KIND).iterdir() if p.name != LOCK_NAME}
    # the files of an entry: a new one (an index, say) must be added to this test
    assert sorted(p.suffix for p in files) == [".json", ".npz"]
    assert (tmp_path / KIND / LOCK_NAME).read_bytes() == b""
    key = next(p.stem for p in files)
    caplog.set_level(logging.ERROR, logger=LOGGER)  # one warning per flip: not kept
    checked = 0
    for path, pristine in files.items():
        for i in range(len(pristine)):
            for p, b in files.items():
                p.write_bytes(b)
            damaged = bytearray(pristine)
            damaged[i] ^= 1 << (i % 8)
            path.write_bytes(bytes(damaged))
            cache = Cache(tmp_path)
            assert cache.load(KIND, key) is None, (path.name, i)
            assert cache.stats[f"corrupt:{KIND}"] == 1, (path.name, i)
            assert not any(p.exists() for p in files), (path.name, i)  # removed
            checked += 1
    assert checked == sum(len(b) for b in files.values())


@FAST
@given(
    suffix=st.sampled_from([".json", ".npz"]),
    where=st.floats(0, 1, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_flipped_byte_is_recomputed_never_served(tmp_path_factory, caplog, suffix, where, mask):
    root = tmp_path_factory.mktemp("flip")
    Cache(root).memo(KIND, {"x": 1}, lambda: _bundle(1))
    (path,) = (root / KIND).glob(f"*{suffix}")
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= mask
    path.write_bytes(bytes(data))
    caplog.clear()
    cache = Cache(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result, hit = cache.memo(KIND, {"x": 1}, lambda: _bundle(2))
    assert not hit and result["summary"]["n"] == 2
    assert cache.events[-1]["outcome"] == "corrupt"
    (warning,) = _warnings(caplog)
    assert f"{KIND}/{path.stem[:12]}" in warning and "recomputed" in warning
    # the recomputed result replaced the damaged entry
    result, hit = Cache(root).memo(KIND, {"x": 1}, lambda: 1 / 0)
    assert hit and result["summary"]["n"] == 2


@pytest.fixture(scope="module")
def tiny_eq_entry(tmp_path_factory):
    """A two-country equilibrium (households at given prices, n_a 20) and the files of its
    cache entry, computed once."""
    world = World(
        countries=("AAA", "BBB"), tfp=[1.0, 0.9], labor=[1.0, 0.6], d=[[1.0, 1.3], [1.3, 1.0]]
    )
    hh = Household(n_a=20, n_perm=3, n_iid=1, beta=0.93)
    eq = evaluate(world, hh, [1.0, 1.0], R=1.01)
    root = tmp_path_factory.mktemp("eq")
    opts = {"evaluate": True, "wages": [1.0, 1.0], "R": 1.01}
    cached_equilibrium(Cache(root), world, hh, lambda: eq, options=opts)
    files = {p.name: p.read_bytes() for p in (root / "equilibrium").iterdir()}
    return world, hh, eq, opts, files


@FAST
@given(
    suffix=st.sampled_from([".json", ".npz"]),
    where=st.floats(0, 1, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_flipped_byte_in_a_stored_equilibrium(tmp_path_factory, tiny_eq_entry, suffix, where, mask):
    world, hh, eq, opts, files = tiny_eq_entry
    root = tmp_path_factory.mktemp("eqflip")
    (root / "equilibrium").mkdir()
    for name, data in files.items():
        if name.endswith(suffix):
            data = bytearray(data)
            data[int(where * len(data))] ^= mask
        (root / "equilibrium" / name).write_bytes(bytes(data))
    calls = []

    def solve():
        calls.append(1)
        return eq

    cache = Cache(root)
    got, hit = cached_equilibrium(cache, world, hh, solve, options=opts)
    assert not hit and calls == [1] and got is eq
    assert cache.stats["corrupt:equilibrium"] == 1
    got, hit = cached_equilibrium(Cache(root), world, hh, solve, options=opts)
    assert hit and calls == [1] and got.beta == eq.beta and got.converged == eq.converged
    np.testing.assert_array_equal(got.lam, eq.lam)


# ----------------------------------------------------------------------------- (b) interrupts


@FAST
@given(point=st.integers(0, 10_000), after=st.booleans(), interrupt=st.booleans())
def test_interrupted_store_leaves_the_old_entry_or_none(point, after, interrupt):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        cache = Cache(root)
        key = cache.key(KIND, x=1)
        cache.store(KIND, key, *encode_bundle(_bundle(1)))
        n = len(_count_calls(lambda: cache.store(KIND, cache.key(KIND, x=2), *_enc(2))))
        inj = Injector(point % n, _fault(interrupt), after)
        raised = inj.run(lambda: cache.store(KIND, key, *_enc(3)))
        left = [f for f in _files(root) if cache.key(KIND, x=2) not in f]
        assert not [f for f in left if f.endswith(".tmp")]
        fresh = Cache(root)
        entry = fresh.load(KIND, key)
        assert fresh.stats[f"corrupt:{KIND}"] == 0  # never a half entry
        if not raised:  # the fault was absorbed: the new entry is complete
            assert _value(entry) == 3
        elif entry is None:
            assert left == [LOCK_NAME]
        else:
            assert _value(entry) == 1  # the old entry, intact


def _enc(n: int):
    return encode_bundle(_bundle(n))


@FAST
@given(point=st.integers(0, 10_000), after=st.booleans())
def test_write_error_in_memo_gives_the_result_and_one_warning(caplog, point, after):
    """A disk error at any file operation of a lookup and store: the result is returned;
    either the error was absorbed (a reader goes on without its lock) and the entry is
    stored, or the cache goes on without storing (one warning) and nothing is left."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        probe = Cache(root / "probe")
        n = len(_count_calls(lambda: probe.memo(KIND, {"x": 0}, lambda: _bundle(0))))
        caplog.clear()
        cache = Cache(root / "c")
        inj = Injector(point % n, _fault(False), after)

        def run():
            return [cache.memo(KIND, {"x": i}, lambda i=i: _bundle(i))[0] for i in range(3)]

        results = []
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert not inj.run(lambda: results.extend(run()))
        assert [r["summary"]["n"] for r in results] == [0, 1, 2]
        if cache.write:
            assert _warnings(caplog) == []
            assert [_value(Cache(root / "c").load(KIND, cache.key(KIND, x=i))) for i in range(3)]
        else:
            (warning,) = _warnings(caplog)
            assert "No space left on device" in warning and str(root / "c") in warning
            assert [f for f in _files(root / "c") if f != LOCK_NAME] == []


# ----------------------------------------------------------------------------- (c) unusable folders


def _refusing_open(root: Path, code: int):
    """``os.open`` that refuses to create files under ``root`` with OSError ``code``."""
    real = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, flags, *args, **kwargs)

    return open_


@pytest.mark.parametrize("probe", [True, False], ids=["checked", "unchecked"])
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_unwritable_cache_folder_warns_once_and_the_run_goes_on(tmp_path, caplog, code, probe):
    """Checked before the run (as ``replicate`` does) or found by the first write: one
    warning naming the folder, the reason and the fix; every result computed."""
    import copy

    root = tmp_path / "cache"
    cache = Cache(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(os, "open", _refusing_open(root, code))
            if probe:
                assert cache.check() is False
            view = copy.copy(cache)  # another thread's view: the same folder state
            out = [view.memo(KIND, {"x": i}, lambda i=i: _bundle(i)) for i in range(3)]
            out += [cache.memo(KIND, {"x": 9}, lambda: _bundle(9))]
            assert cache.check() is False
    assert [(r["summary"]["n"], hit) for r, hit in out] == [(0, 0), (1, 0), (2, 0), (9, 0)]
    (warning,) = _warnings(caplog)
    assert str(root) in warning and os.strerror(code) in warning and "--cache-dir" in warning
    assert not cache.write and not view.write and cache.unusable == os.strerror(code)
    assert _files(root) == []


def test_cache_folder_that_is_a_file(tmp_path, caplog):
    root = tmp_path / "cache"
    root.write_text("not a folder\n")
    cache = Cache(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.check() is False
        r, hit = cache.memo(KIND, {"x": 1}, lambda: _bundle(1))
        cache.check()
    assert not hit and r["summary"]["n"] == 1
    (warning,) = _warnings(caplog)
    assert "not a folder" in warning and str(root) in warning
    assert not cache.read and not cache.write
    assert root.read_text() == "not a folder\n"


@pytest.mark.parametrize("how", ["env", "argument"])
def test_replicate_goes_on_without_an_unusable_cache(tmp_path, caplog, monkeypatch, how):
    """Issue 16, class 7: an unusable cache folder stopped ``replicate`` with a bare errno;
    the run goes on without the cache, with one warning (no stage is run here: the check
    happens before any)."""
    from hatrade.replicate import replicate

    root = tmp_path / "cache"
    root.write_text("not a folder\n")
    if how == "env":
        monkeypatch.setenv("HATRADE_CACHE", str(root))
    cache = None if how == "env" else Cache(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run = replicate(tmp_path / "out", quick=True, cache=cache, stages=[])
    assert run.ok
    (warning,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert str(root) in warning and "--cache-dir" in warning
    assert root.read_text() == "not a folder\n"


def test_cli_replicate_goes_on_without_an_unusable_cache(tmp_path, monkeypatch):
    """The command line: one warning, no JAX compilation cache in the unusable folder,
    exit 0 (the stages are left out here: the check happens before any)."""
    from typer.testing import CliRunner

    import hatrade.replicate as rep
    from hatrade.cli import app

    root = tmp_path / "cache"
    root.write_text("not a folder\n")
    monkeypatch.setenv("HATRADE_CACHE", str(root))
    real = rep.replicate
    # the command passes its stages; none run here
    monkeypatch.setattr(rep, "replicate", lambda out, **kw: real(out, **{**kw, "stages": []}))
    res = CliRunner().invoke(app, ["replicate", "--quick", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert text.count("cannot be used") == 1 and "--cache-dir" in text
    assert "Errno" not in text
    assert root.read_text() == "not a folder\n"


def test_writing_off_by_choice_is_not_probed(tmp_path):
    cache = Cache(tmp_path / "never", read=False, write=False)
    assert cache.check() is False and cache.unusable is None
    assert not (tmp_path / "never").exists()


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, options)``: a tmpfs at ``tmp_path/name`` (skips where not allowed)."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        d = tmp_path / name
        d.mkdir()
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True
        )
        if run.returncode:
            pytest.skip(f"mount -t tmpfs is not allowed here: {run.stderr.decode().strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_read_only_tmpfs(tmpfs, caplog):
    root = tmpfs("ro", "ro,size=1m")
    cache = Cache(root / "cache")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not cache.check()
        results = [cache.memo(KIND, {"x": i}, lambda i=i: _bundle(i))[0] for i in range(2)]
    assert [r["summary"]["n"] for r in results] == [0, 1]
    (warning,) = _warnings(caplog)
    assert "Read-only file system" in warning


def test_full_tmpfs(tmpfs, caplog):
    root = tmpfs("full", "size=64k")
    cache = Cache(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.check()  # an empty file still fits
        results = [
            cache.memo(KIND, {"x": i}, lambda i=i: _bundle(i, size=20_000))[0] for i in range(3)
        ]
    assert [r["summary"]["n"] for r in results] == [0, 1, 2]
    (warning,) = _warnings(caplog)
    assert "No space left on device" in warning
    assert [f for f in _files(root) if f != LOCK_NAME] == []  # nothing half written


# ----------------------------------------------------------------------------- (d) two writers


def test_concurrent_writers_and_readers_of_one_entry(tmp_path):
    """Threads write one entry with their own contents while others read it: every read
    is a complete, verified version, and so is the entry afterwards."""
    key = Cache(tmp_path).key(KIND, x=1)
    writers, rounds = 4, 8
    start = threading.Barrier(writers + 2)
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(i):
        cache = Cache(tmp_path)
        start.wait()
        for _ in range(rounds):
            cache.store(KIND, key, *encode_bundle(_bundle(i, size=2000)))

    def read():
        cache = Cache(tmp_path)
        start.wait()
        for _ in range(rounds * 2):
            entry = cache.load(KIND, key)
            if entry is not None:
                seen.append(_value(entry))
        assert cache.stats[f"corrupt:{KIND}"] == 0

    def guarded(fn, *args):
        try:
            fn(*args)
        except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(write, i)) for i in range(writers)]
    threads += [threading.Thread(target=guarded, args=(read,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert set(seen) <= set(range(writers))
    cache = Cache(tmp_path)
    assert _value(cache.load(KIND, key)) in range(writers)
    assert cache.stats[f"corrupt:{KIND}"] == 0
    assert sorted(_files(tmp_path)) == sorted([LOCK_NAME, f"{key}.json", f"{key}.npz"])


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from hatrade.io.cache import Cache, decode_bundle, encode_bundle
    root, i = Path(sys.argv[1]), int(sys.argv[2])
    cache = Cache(root)
    key = cache.key("thing", x=1)
    (root / f"ready-{i}").touch()
    while not (root / "go").exists():
        time.sleep(0.01)
    for r in range(15):
        b = {"x": np.arange(2000.0) + i, "summary": {"n": i, "ok": True}}
        cache.store("thing", key, *encode_bundle(b))
        entry = cache.load("thing", key)
        if entry is not None:
            got = decode_bundle(*entry)
            n = got["summary"]["n"]
            assert np.array_equal(got["x"], np.arange(2000.0) + n), n
    assert cache.stats["corrupt:thing"] == 0, cache.stats
    """
)


def test_two_processes_write_one_entry(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(hatrade.__file__).parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()
    cache = Cache(tmp_path)
    assert _value(cache.load(KIND, cache.key(KIND, x=1))) in (0, 1)
    assert cache.stats[f"corrupt:{KIND}"] == 0


# ----------------------------------------------------------------------------- (e) atomic writes

_WRITES = {
    "bytes": lambda p: atomic.write_bytes(p, b"new contents\n"),
    "text": lambda p: atomic.write_text(p, "new contents\n"),
    "json": lambda p: atomic.write_json(p, {"new": [1, 2.5, None]}),
}


@FAST
@given(
    how=st.sampled_from(sorted(_WRITES)),
    point=st.integers(0, 10_000),
    after=st.booleans(),
    interrupt=st.booleans(),
)
def test_atomic_write_under_errors_keeps_the_destination(how, point, after, interrupt):
    with tempfile.TemporaryDirectory() as d:
        dest = Path(d) / "out.txt"
        calls = _count_calls(lambda: _WRITES[how](Path(d) / "probe.txt"))
        (Path(d) / "probe.txt").unlink()
        at = point % len(calls)
        dest.write_bytes(b"old contents\n")
        inj = Injector(at, _fault(interrupt), after)
        raised = inj.run(lambda: _WRITES[how](dest))
        now = dest.read_bytes()
        if not raised or (after and at == len(calls) - 1):  # absorbed, or after the rename
            assert now != b"old contents\n"
        else:
            assert now == b"old contents\n"
        assert os.listdir(d) == ["out.txt"]  # no temporary file behind


@FAST
@given(point=st.integers(0, 10_000), after=st.booleans(), interrupt=st.booleans())
def test_atomic_dir_under_errors_keeps_the_folder(point, after, interrupt):
    def build(out: Path):
        with atomic.atomic_dir(out) as tmp:
            atomic.write_text(tmp / "a.txt", "new\n")

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "run"
        build(Path(d) / "probe")
        calls = _count_calls(lambda: build(Path(d) / "probe"))  # the swap of a folder
        shutil.rmtree(Path(d) / "probe")
        at = point % len(calls)
        out.mkdir()
        (out / "a.txt").write_text("old\n")
        (out / "b.txt").write_text("mine\n")
        inj = Injector(at, _fault(interrupt), after)
        swap = max(k for k, c in enumerate(calls) if c == "replace")
        raised = inj.run(lambda: build(out))
        got = {p.name: p.read_text() for p in out.iterdir()}
        if not raised or at > swap or (after and at == swap):  # absorbed, or after the swap
            assert got == {"a.txt": "new\n"}
        else:
            assert got == {"a.txt": "old\n", "b.txt": "mine\n"}
        assert os.listdir(d) == ["run"]  # no temporary or set-aside folder behind
