"""Stages in threads: lanes of stages and computations started in the background.

JAX compiles and computes outside Python's lock, so stages that do not depend on each
other run in threads of their own (:data:`LANES`); each thread works on a view of the stage
context (:func:`lane_view`) whose cache records its own events, so that the results each
stage computed or loaded are attributed to it.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from typing import Callable, Sequence

from hatrade.io.cache import Cache
from hatrade.replicate.context import StageContext

__all__ = ["LANES", "lanes", "lane_view", "Background"]

#: Stages that run in threads of their own when ``parallel``, each tuple in order in one
#: thread (the counterfactuals share a Jacobian); the other stages after ``equilibrium`` run
#: in one more thread.
LANES: tuple[tuple[str, ...], ...] = (("unilateral", "global"),)


def lanes(names: Sequence[str], parallel: bool) -> list[list[str]]:
    """Split the stages that follow the equilibria into lanes (one lane unless parallel)."""
    names = list(names)
    if not parallel:
        return [names] if names else []
    own = [[n for n in names if n in lane] for lane in LANES]
    rest = [n for n in names if not any(n in lane for lane in LANES)]
    return [lane for lane in [rest] + own if lane]


def lane_view(ctx: StageContext) -> StageContext:
    """A context for another thread: the same results dicts, its own view of the cache
    (so that cache events are attributed to the right stage)."""
    lcache = copy.copy(ctx.cache)
    lcache.events = []
    return replace(ctx, cache=lcache)


class Background:
    """``fn(view)`` started in a daemon thread with its own view of the context
    (:func:`lane_view`), collected later.

    64-bit JAX is switched on in the thread (the setting is per thread). The thread is a
    daemon: an interrupt stops the run at once, and finished results are in the cache for
    a rerun.
    """

    def __init__(self, fn: Callable, ctx: StageContext, name: str):
        import jax

        self.ctx = lane_view(ctx)
        self.value, self.error = None, None

        def main():
            try:
                with jax.enable_x64(True):
                    self.value = fn(self.ctx)
            except BaseException as err:  # noqa: BLE001 - re-raised by result()
                self.error = err

        self.thread = threading.Thread(target=main, daemon=True, name=f"hatrade-{name}")
        self.thread.start()

    def wait(self) -> None:
        """Wait for the thread (in short joins, so that Ctrl-C reaches the caller)."""
        while self.thread.is_alive():
            self.thread.join(0.2)

    def result(self, into: Cache | None = None):
        """Wait for the value (or raise the error); its cache events go to ``into``."""
        self.wait()
        if into is not None:
            into.events.extend(self.ctx.cache.events)
        if self.error is not None:
            raise self.error
        return self.value
