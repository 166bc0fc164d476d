"""What a stage of ``hatrade replicate`` works with: its context and the progress sink.

A stage is a function ``stage(ctx) -> StageResult``: :class:`StageContext` gives it the
setup, the results cache, the results of earlier stages (equilibria, elasticities, key
numbers) and helpers that write its result files into the stage's folder.
:func:`for_each_model` runs one model's part of a stage for every model, collecting
failures; :func:`stage_status` turns them into the stage's status.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from hatrade.io.cache import Cache
from hatrade.replicate.report import Figure, StageResult, figure_png
from hatrade.replicate.setup import ModelSpec, Setup

__all__ = [
    "ProgressSink",
    "StageContext",
    "StageDependencyError",
    "for_each_model",
    "stage_status",
    "now",
]

log = logging.getLogger(__name__)


class StageDependencyError(RuntimeError):
    """A stage needs a result of an earlier stage that failed."""


def now() -> str:
    """The current UTC time, ISO format, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ProgressSink:
    """Receives progress; the default logs. The CLI draws one rich display from it."""

    def run_start(self, stages: Sequence[tuple[str, str]]) -> None:
        """The run starts: its stages as (name, title)."""
        log.info("replicate: %d stages", len(stages))

    def stage_start(self, index: int, name: str, title: str) -> None:
        """Stage ``index`` starts."""
        log.info("stage %d %s: %s", index + 1, name, title)

    def step(self, text: str) -> None:
        """A step within the current stage."""
        log.info("  %s", text)

    def stage_end(self, index: int, result: StageResult) -> None:
        """Stage ``index`` ended with ``result``."""
        log.info("stage %s: %s in %.1f s", result.name, result.status, result.seconds)


@dataclass
class StageContext:
    """The context of a stage.

    Attributes
    ----------
    setup, cache, out : the run's setup, results cache and output folder.
    progress : where progress goes.
    dir : the current stage's (temporary) folder.
    stage : the current stage's name.
    eq, eq_key : model name -> equilibrium and its cache key (stage ``equilibrium``).
    elast : model name -> (impact, long-run) elasticities (stage ``elasticities``).
    numbers : the key numbers of the run (``replicate.json``).
    jacobians : (unknowns, model name) -> the last Jacobian, a start for the next solve.
    background : name -> a computation started early in a thread of its own.
    """

    setup: Setup
    cache: Cache
    out: Path
    progress: ProgressSink
    dir: Path | None = None
    stage: str = ""
    eq: dict = field(default_factory=dict)
    eq_key: dict = field(default_factory=dict)
    elast: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    jacobians: dict = field(default_factory=dict)
    background: dict = field(default_factory=dict)

    def step(self, text: str) -> None:
        """Report a step of the stage."""
        self.progress.step(text)

    def newton(self, prefix: str):
        """A Newton progress callback that reports through :meth:`step`."""

        def report(iteration: int, residual: float) -> None:
            self.progress.step(f"{prefix}: Newton {iteration}, max excess demand {residual:.2e}")

        return report

    def need_eq(self, spec: ModelSpec):
        """The model's equilibrium, or :class:`StageDependencyError`."""
        if spec.name not in self.eq:
            raise StageDependencyError(
                f"the {spec.name} equilibrium is not available (stage 'equilibrium' failed for it)."
            )
        return self.eq[spec.name]

    def path(self, *parts) -> Path:
        """A path in the stage's folder (its parent created)."""
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def rel(self, *parts) -> str:
        """The path relative to the output folder, as listed in the stage's files."""
        return "/".join((self.stage,) + tuple(str(p) for p in parts))

    def write_text(self, text: str, *parts) -> str:
        """Write a text file into the stage's folder; returns :meth:`rel`."""
        from hatrade.io.atomic import write_text

        write_text(self.path(*parts), text)
        return self.rel(*parts)

    def write_csv(self, df: pd.DataFrame, *parts, index: bool = False) -> str:
        """Write a CSV file (every digit of the floats)."""
        return self.write_text(df.to_csv(index=index, float_format="%.17g"), *parts)

    def write_json(self, obj, *parts) -> str:
        """Write a JSON file."""
        from hatrade.io.atomic import jsonable

        return self.write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n", *parts)

    def figure(self, fig, fid: str, title: str, caption: str, *parts) -> Figure:
        """Write a matplotlib figure as PNG; returns the report's :class:`Figure`."""
        png = figure_png(fig)
        p = self.path(*parts)
        p.write_bytes(png)
        return Figure(id=fid, title=title, png=png, caption=caption, file=self.rel(*parts))

    def memo(self, kind: str, inputs: dict, compute: Callable, label: str, **kw):
        """``compute()`` through the results cache (see :meth:`Cache.memo`)."""
        result, _ = self.cache.memo(kind, inputs, compute, label=label, **kw)
        return result


def for_each_model(ctx: StageContext, fn: Callable[[ModelSpec], Any]) -> tuple[dict, dict]:
    """Run ``fn`` for every model; failures are collected, the other models go on.

    Returns
    -------
    done : dict
        model name -> ``fn``'s value.
    errors : dict
        model name -> (exception, traceback text).
    """
    done, errors = {}, {}
    for spec in ctx.setup.models:
        try:
            done[spec.name] = fn(spec)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported in the report
            log.warning(
                "stage %s, model %s failed: %s",
                ctx.stage,
                spec.name,
                err,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            errors[spec.name] = (err, traceback.format_exc())
    return done, errors


def stage_status(result: StageResult, done: dict, errors: dict) -> StageResult:
    """Set ``result``'s status and error from :func:`for_each_model`'s outcome: failed when
    no model succeeded, partial when some did."""
    if errors:
        msgs = [f"{name}: {type(e).__name__}: {e}" for name, (e, _) in errors.items()]
        result.error = "\n".join(msgs)
        result.details = "\n\n".join(tb for _, tb in errors.values())
        result.status = "failed" if not done else "partial"
    return result
