"""Stages in threads: lanes of stages and computations started in the background.

JAX compiles and computes outside Python's lock, so stages that do not depend on each
other run in threads of their own (:data:`LANES`); each thread works on a view of the stage
context (:func:`lane_view`) whose cache records its own events, so that the results each
stage computed or loaded are attributed to it.

Interrupts: the main thread only waits (in short joins, so that Ctrl-C reaches it at once,
even while a thread is inside one long compiled JAX call). On Ctrl-C it sets the run's stop
event; every thread stops at its next step (:class:`StopOnEvent` raises :class:`Stopped`
from the progress calls that stages and Newton solvers make between steps), and its
stage's temporary folder is removed on the way out.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace
from typing import Callable, Iterable, Sequence

from hatrade.io.cache import Cache
from hatrade.replicate.context import ProgressSink, StageContext

__all__ = ["LANES", "lanes", "lane_view", "Background", "Stopped", "StopOnEvent", "stop_all"]

#: Stages that run in threads of their own when ``parallel``, each tuple in order in one
#: thread (the counterfactuals share a Jacobian); the other stages after ``equilibrium`` run
#: in one more thread.
LANES: tuple[tuple[str, ...], ...] = (("unilateral", "global", "transitions"),)


class Stopped(KeyboardInterrupt):
    """Raised in a worker thread at its next step once the run was interrupted."""


class StopOnEvent(ProgressSink):
    """A progress sink that passes everything on to ``sink`` but raises :class:`Stopped`
    when a stage or a step starts after ``stop`` was set (a stage's end is passed on)."""

    def __init__(self, sink: ProgressSink, stop: threading.Event):
        self.sink, self.stop = sink, stop

    def check(self) -> None:
        """Raise :class:`Stopped` if the run was interrupted."""
        if self.stop.is_set():
            raise Stopped("interrupted")

    def run_start(self, stages) -> None:
        self.check()
        self.sink.run_start(stages)

    def stage_start(self, index: int, name: str, title: str) -> None:
        self.check()
        self.sink.stage_start(index, name, title)

    def step(self, text: str) -> None:
        self.check()
        self.sink.step(text)

    def stage_end(self, index: int, result) -> None:
        self.sink.stage_end(index, result)


def lanes(names: Sequence[str], parallel: bool) -> list[list[str]]:
    """Split the stages that follow the equilibria into lanes (one lane unless parallel)."""
    names = list(names)
    if not parallel:
        return [names] if names else []
    own = [[n for n in names if n in lane] for lane in LANES]
    rest = [n for n in names if not any(n in lane for lane in LANES)]
    return [lane for lane in [rest] + own if lane]


def lane_view(ctx: StageContext, stop: threading.Event | None = None) -> StageContext:
    """A context for another thread: the same results dicts, its own view of the cache
    (so that cache events are attributed to the right stage); with ``stop``, its progress
    calls raise :class:`Stopped` once ``stop`` is set."""
    lcache = copy.copy(ctx.cache)
    lcache.events = []
    progress = ctx.progress
    if stop is not None:
        base = progress.sink if isinstance(progress, StopOnEvent) else progress
        progress = StopOnEvent(base, stop)
    return replace(ctx, cache=lcache, progress=progress)


class Background:
    """``fn(view)`` started in a daemon thread with its own view of the context
    (:func:`lane_view`, stopping at its next step once ``stop`` is set), collected later.

    64-bit JAX is switched on in the thread (the setting is per thread). The thread is a
    daemon, so that one still inside a long compiled call never keeps the process alive;
    finished results are in the cache for a rerun.
    """

    def __init__(
        self, fn: Callable, ctx: StageContext, name: str, stop: threading.Event | None = None
    ):
        import jax

        self.ctx = lane_view(ctx, stop)
        self.value, self.error = None, None
        self.done = threading.Event()  # not Thread.join: an interrupted join may leave
        # is_alive wrong

        def main():
            try:
                with jax.enable_x64(True):
                    self.value = fn(self.ctx)
            except BaseException as err:  # noqa: BLE001 - re-raised by result()
                self.error = err
            finally:
                self.done.set()

        self.thread = threading.Thread(target=main, daemon=True, name=f"hatrade-{name}")
        self.thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread, at most ``timeout`` seconds (None: until it ends), in short
        joins so that Ctrl-C reaches the caller; True when it ended."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.done.is_set():
            left = 0.2 if end is None else min(0.2, end - time.monotonic())
            if left <= 0:
                return False
            self.done.wait(left)
        return True

    def result(self, into: Cache | None = None):
        """Wait for the value (or raise the error); its cache events go to ``into``."""
        self.wait()
        if into is not None:
            into.events.extend(self.ctx.cache.events)
        if self.error is not None:
            raise self.error
        return self.value


def stop_all(threads: Iterable[Background], stop: threading.Event, grace: float) -> list:
    """Set ``stop`` and wait up to ``grace`` seconds in all for ``threads`` to end; the
    threads still running (inside one long compiled call) are returned."""
    stop.set()
    end = time.monotonic() + grace
    alive = []
    for t in threads:
        if not t.wait(max(0.0, end - time.monotonic())):
            alive.append(t)
    return alive
