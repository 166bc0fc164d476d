r"""``hatrade replicate``: everything the paper reports, from the shipped data, in one run.

The run is a sequence of *stages* (:mod:`hatrade.replicate.stages`); each computes one group
of results for the baseline model (:math:`\gamma = 1.45`) and the log model
(:math:`\gamma = 1`), writes its result files into ``OUT/<stage>/`` and returns what the
report shows:

``equilibrium``
    The stationary equilibrium of each model: 18 wages and :math:`\beta` at
    :math:`R = 1.01`, solved from the published prices (a solve folder per model, see
    :mod:`hatrade.io.results`).
``table1``
    Table 1: the gravity regression on the data (the moments), on model-generated trade
    (the model fit) and the trade-cost parameters; all 46 moments.
``trade_fit``
    Model against data log normalized trade :math:`\log(X_{ij}/X_{ii})` (Figure 2).
``elasticities``
    Proposition 1 trade elasticities of the home country (the US) by partner, impact and
    long run (docs/model.md 5).
``micro``
    The micro table (import share, trade elasticity, MPC by income group and expenditure
    quintile) and household elasticities by state, for the US and for the paper's
    symmetric two-country world.
``unilateral``, ``global``
    A 10% cut of the US's import costs and of all trade costs: new equilibria with
    :math:`\beta` fixed, and the equivalent-variation gains of US households by
    expenditure quintile, baseline against log model.
``efficient``
    The efficient allocation (Proposition 4) against the decentralized one.

Then the report stage (:mod:`hatrade.replicate.outputs`): ``OUT/report.html``
(self-contained), ``OUT/replicate.json`` (all key numbers, stage statuses and times),
``OUT/reproduction.csv`` and ``OUT/reproduction.md`` (published numbers next to ours; the
published numbers, each with its source, are those of :mod:`hatrade.data.published`;
every other number comes from the run).

A stage that fails is reported as failed, with its error, and the others go on (stages
that need its results report that). Solved equilibria and household results go through
the results cache (:mod:`hatrade.io.cache`): a rerun loads them instead of solving.

``quick=True`` uses a coarse asset grid (:data:`~hatrade.replicate.setup.QUICK_N_A` points
instead of :data:`~hatrade.replicate.setup.FULL_N_A`) and re-solves :math:`\beta` and the
wages on it from the published prices; its numbers are approximate and labeled so
everywhere.

Speed: after the equilibria, stages run in threads (:mod:`hatrade.replicate.threads`);
counterfactual equilibria start from the baseline's Jacobian (see
:func:`~hatrade.replicate.stages.counterfactuals.start_jacobian`); the command line keeps
JAX's compiled functions between processes with
:func:`~hatrade.replicate.compilation.jax_compilation_cache` (never switched on for a
program that merely imports hatrade). Times per stage: ``benchmarks/bench_replicate.py``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import pandas as pd

from hatrade.io.cache import Cache
from hatrade.replicate.context import ProgressSink, StageContext, now
from hatrade.replicate.folders import ReplicateError, open_output_dir, prepare_output_dir
from hatrade.replicate.outputs import REPORT_TITLE, RunRecord, write_outputs
from hatrade.replicate.report import StageResult
from hatrade.replicate.setup import Setup, paper_setup
from hatrade.replicate.stages import ALL_STAGE_NAMES, STAGE_NAMES, STAGES, stage_titles
from hatrade.replicate.stages.micro import two_country_elasticities
from hatrade.replicate.threads import Background, Stopped, lanes, stop_all

__all__ = ["replicate", "ReplicateResult"]

log = logging.getLogger(__name__)


@dataclass
class ReplicateResult:
    """The outcome of :func:`replicate`.

    Attributes
    ----------
    out : the output folder.
    report : path of ``report.html``.
    stages : the :class:`~hatrade.replicate.report.StageResult` of every stage (report last).
    numbers : the key numbers (as in ``replicate.json``).
    reproduction : the reproduction table.
    cache : counts of results loaded (``hit``) and computed (``miss``) by kind.
    seconds : total wall time.
    quick : a ``--quick`` run.
    """

    out: Path
    report: Path
    stages: list
    numbers: dict
    reproduction: pd.DataFrame
    cache: dict
    seconds: float
    quick: bool = False

    @property
    def ok(self) -> bool:
        """Every stage succeeded."""
        return all(s.status == "ok" for s in self.stages)

    def stage(self, name: str) -> StageResult:
        """The result of stage ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def solves(self) -> int:
        """Equilibria solved (not loaded) in this run."""
        return int(self.cache.get("miss", {}).get("equilibrium", 0))


class _StageRunner:
    """Runs stages into their folders of ``out``, each on a view of the context; collects
    their results and cache events by stage name."""

    def __init__(self, ctx: StageContext, names: Sequence[str]):
        self.ctx = ctx
        self.names = list(names)
        self.index = {n: k for k, n in enumerate(self.names)}
        self.titles = stage_titles(ctx.setup)
        self.by_name: dict[str, tuple[StageResult, list]] = {}
        #: stage name -> its temporary folder while it runs
        self.open_dirs: dict[str, Path] = {}

    def _call(self, name: str, sctx: StageContext) -> StageResult:
        """The stage's result; an exception becomes a failed stage."""
        try:
            return STAGES[name](sctx)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported, the run goes on
            log.warning("stage %s failed: %s", name, err, exc_info=log.isEnabledFor(logging.DEBUG))
            return StageResult(
                name,
                self.titles[name],
                status="failed",
                error=f"{type(err).__name__}: {err}",
                details=traceback.format_exc(),
            )

    def run_stage(self, name: str, lctx: StageContext) -> None:
        """Run one stage into ``out/<name>`` (replaced atomically when it ends)."""
        from hatrade.io.atomic import atomic_dir, write_text

        k = self.index[name]
        progress = lctx.progress
        progress.stage_start(k, name, self.titles[name])
        t0 = time.perf_counter()
        n_events = len(lctx.cache.events)
        sctx = replace(lctx, stage=name)
        with atomic_dir(lctx.out / name) as tmp:
            self.open_dirs[name] = tmp
            sctx.dir = tmp
            try:
                res = self._call(name, sctx)
                if res.status != "ok" and res.error:
                    write_text(tmp / "error.txt", res.error + "\n\n" + (res.details or ""))
                    res.files.append(f"{name}/error.txt")
            finally:
                self.open_dirs.pop(name, None)
        res.title = self.titles[name]
        res.seconds = time.perf_counter() - t0
        ev = lctx.cache.events[n_events:]
        res.cache = {
            "hit": sum(e["outcome"] == "hit" for e in ev),
            "miss": sum(e["outcome"] != "hit" for e in ev),
        }
        if lctx.setup.quick:
            res.text.insert(0, "Approximate (--quick): coarse asset grid.")
        self.by_name[name] = (res, list(ev))
        progress.stage_end(k, res)

    def run_lane(self, lane: Sequence[str], lctx: StageContext) -> None:
        """Run stages one after the other on one context view."""
        for name in lane:
            self.run_stage(name, lctx)

    def run_all(self, parallel: bool, grace: float = 2.0) -> None:
        """The equilibria first (every other stage needs them), then the other stages in
        lanes: in threads of their own when ``parallel``, else one after the other.

        Every lane runs in a worker thread while this thread waits, so that Ctrl-C is
        handled at once: the workers stop at their next step (``grace`` seconds at most
        are waited for them), the temporary folders of the stages that were running are
        removed and :class:`~hatrade.replicate.threads.Stopped` is raised; finished stage
        folders and cached results stay, so the same run resumes from them.
        """
        ctx, stop = self.ctx, threading.Event()
        first = [n for n in self.names if n == "equilibrium"]
        rest = lanes([n for n in self.names if n not in first], parallel)
        threads: list[Background] = []
        try:
            if parallel and "micro" in self.names:
                bg = Background(two_country_elasticities, ctx, "two-country", stop)
                ctx.background["two_country"] = bg
            for group in ([first], rest):
                threads = [self._lane_thread(lane, stop) for lane in group if lane]
                for t in threads:
                    t.wait()
                for t in threads:
                    t.result()
        except KeyboardInterrupt:
            self._interrupt(threads + list(ctx.background.values()), stop, grace)

    def _lane_thread(self, lane: Sequence[str], stop: threading.Event) -> Background:
        """The stages of ``lane``, one after the other, in a thread of their own."""
        return Background(
            lambda lctx: self.run_lane(lane, lctx), self.ctx, f"replicate-{lane[0]}", stop
        )

    def _interrupt(self, threads: list, stop: threading.Event, grace: float) -> None:
        """Stop the workers (see :meth:`run_all`) and raise
        :class:`~hatrade.replicate.threads.Stopped`."""
        alive = stop_all(threads, stop, grace)
        for tmp in list(self.open_dirs.values()):
            shutil.rmtree(tmp, ignore_errors=True)
        if alive:
            log.debug("interrupted; %d worker(s) still inside a compiled call", len(alive))
        raise Stopped("interrupted; rerun the same command to resume") from None

    def collect(self, cache: Cache) -> tuple[list[StageResult], list[dict]]:
        """The stages' results in order, and every cached result (computed or loaded, and
        how long it took); each stage's cache events go into ``cache``."""
        results = [self.by_name[n][0] for n in self.names]
        work: list[dict] = []
        for name in self.names:
            ev = self.by_name[name][1]
            cache.events.extend(ev)
            work.extend(
                {
                    "stage": name,
                    "result": e["label"],
                    "kind": e["kind"],
                    "outcome": "loaded" if e["outcome"] == "hit" else "computed",
                    "seconds": e["seconds"],
                    "key": e["key"][:12],
                }
                for e in ev
            )
        return results, work


def _resolve_cache(cache: Cache | None | bool) -> Cache:
    """None: the default cache; False: a cache that neither reads nor writes. A cache whose
    folder cannot be written is used without storing results (one warning, see
    :meth:`~hatrade.io.cache.Cache.check`): the run goes on."""
    if cache is False:
        return Cache(read=False, write=False)
    resolved = Cache() if cache is None else cache
    resolved.check()
    return resolved


def _stage_names(stages: Sequence[str] | None) -> list[str]:
    """The stages to run (default all), checked."""
    names = list(STAGE_NAMES if stages is None else stages)
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ReplicateError(f"unknown stage(s) {unknown}; stages: {', '.join(ALL_STAGE_NAMES)}.")
    return names


def _finish(
    ctx: StageContext, runner: _StageRunner, started: str, t_start: float
) -> ReplicateResult:
    """Collect the stages' results, run the report stage and return the outcome."""
    cache, progress, n = ctx.cache, ctx.progress, len(runner.names)
    results, work = runner.collect(cache)
    progress.stage_start(n, "report", REPORT_TITLE)
    report_stage, repro = write_outputs(
        RunRecord(
            setup=ctx.setup,
            out=ctx.out,
            cache=cache,
            numbers=ctx.numbers,
            stages=results,
            work=work,
            started=started,
            t_start=t_start,
        )
    )
    results.append(report_stage)
    progress.stage_end(n, report_stage)
    return ReplicateResult(
        out=ctx.out,
        report=ctx.out / "report.html",
        stages=results,
        numbers=ctx.numbers,
        reproduction=repro,
        cache=cache.summary(),
        seconds=time.perf_counter() - t_start,
        quick=ctx.setup.quick,
    )


def replicate(
    out=None,
    *,
    quick: bool = False,
    setup: Setup | None = None,
    cache: Cache | None | bool = None,
    progress: ProgressSink | None = None,
    stages: Sequence[str] | None = None,
    parallel: bool = True,
) -> ReplicateResult:
    """Run the replication and write the results and the report into ``out``.

    Parameters
    ----------
    out : path-like, optional
        Output folder (default ``results/replicate`` or ``results/replicate-quick``); new,
        empty, or a previous replicate folder (its stage folders are replaced one by one).
    quick : bool
        Coarse grid (see :func:`~hatrade.replicate.setup.paper_setup`); ignored when
        ``setup`` is given.
    setup : Setup, optional
        What to compute (default :func:`~hatrade.replicate.setup.paper_setup`).
    cache : Cache, None or False
        The results cache (None: :class:`~hatrade.io.cache.Cache` at its default location;
        False: no cache at all). A cache folder that cannot be written (read-only, a file,
        a full disk) does not stop the run: one warning, and results are not stored.
    progress : ProgressSink, optional
    stages : names of the stages to run (default
        :data:`~hatrade.replicate.stages.STAGE_NAMES`: all but the optional ones,
        :data:`~hatrade.replicate.stages.OPTIONAL_STAGES`, e.g. ``transitions``); stages
        that others need must be included (e.g. ``equilibrium``).
    parallel : bool
        After the equilibria, run the stages in threads
        (:data:`~hatrade.replicate.threads.LANES`: the counterfactuals in one, the rest in
        another): JAX compiles and computes outside Python's lock, so on two or more cores
        the run takes about the longest lane instead of the sum. False: one stage at a
        time, in order.

    Returns
    -------
    ReplicateResult

    Raises
    ------
    ReplicateError
        Unknown stage names, or an output folder that cannot be used.
    """
    t_start = time.perf_counter()
    setup = setup or paper_setup(quick=quick)
    if out is None:
        out = Path("results") / ("replicate-quick" if setup.quick else "replicate")
    names = _stage_names(stages)
    folder = open_output_dir(out)
    with folder.session():
        prepare_output_dir(folder, ALL_STAGE_NAMES)
        ctx = StageContext(
            setup=setup,
            cache=_resolve_cache(cache),
            out=folder.path,
            progress=progress or ProgressSink(),
        )
        runner = _StageRunner(ctx, names)
        started = now()
        ctx.progress.run_start([(n, runner.titles[n]) for n in names] + [("report", "Report")])
        runner.run_all(parallel)
        return _finish(ctx, runner, started, t_start)
