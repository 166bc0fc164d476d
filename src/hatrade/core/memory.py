r"""Memory estimates, checked before a run starts.

A world solve holds, for every country, household arrays of shape (Na, Nz, M) in float64:
call one (M, Na, Nz, M) array a *state*. The household solve, its policies and the
stationary distribution need about 23 states of XLA buffers; the household-block Jacobian
solves the same problem along D = M + 5 directions at once (prices of the M varieties,
wages, TFP, R, beta, transfers), about 23 states per direction on top; and with few asset
points (Na < 40 M) the distribution uses dense transition blocks (Nz, Na, Na) per country,
1.5 copies per direction. A huge grid or world would end deep inside JAX with
``RESOURCE_EXHAUSTED`` or a ``MemoryError``; instead :func:`check_memory` refuses it up
front with the estimate and the limit.

Calibration: the counts above are XLA's own buffer sizes (``memory_analysis()`` of the
compiled household solve and of the compiled household-block JVPs: arguments, outputs and
temporaries), measured for M = 3 and 6, Nz = 2 and 10, n_a = 100 to 1600: 20-22 states for
the solve and 20-25 states per direction for the Jacobian, plus the dense blocks below
Na = 40 M. :data:`SOLVE_OVERHEAD` (1.25) covers what Python holds besides (the previous
tangents as warm starts, results), and :data:`FIXED_BYTES` the interpreter, JAX and
compiled code (the process's peak resident memory of a 3-country evaluation was
530-570 MB at n_a = 100 to 800, where the arrays are a few MB). The estimate is meant to
refuse only runs that cannot fit; a run refused wrongly can pass an explicit ``limit`` (or
set the environment variable ``HATRADE_MEMORY_LIMIT``, in bytes; ``0`` turns the check
off).

Chunks: when the D directions at once do not fit, the household block solves them in equal
chunks of c directions (:func:`hatrade.core.jacobian.household_block`, ``chunk=``), with the
same results to rounding. A chunk needs ``(c + 1)`` times the per-direction buffers; the
state tangents of all D directions (consumption and values, 2 states each) are kept: the
new block's, the previous block's (warm starts) and, in a calibration, its own block's
across the equilibrium solve, ``6 (D - c)`` states more than the unchunked count. :func:`direction_chunk` picks the largest c that fits;
:func:`check_world_memory` refuses a world only when even one direction at a time does not.

The simulated panel of :func:`hatrade.analysis.cross_section.simulate_households` has its
own estimate (:func:`estimate_simulation_bytes`).
"""

from __future__ import annotations

import os

from hatrade.core.errors import ParameterError

__all__ = [
    "MemoryEstimateError",
    "SOLVE_OVERHEAD",
    "FIXED_BYTES",
    "estimate_bytes",
    "direction_chunk",
    "estimate_simulation_bytes",
    "available_memory",
    "check_memory",
    "check_world_memory",
]

#: Peak memory / XLA buffers of a world solve (module docstring).
SOLVE_OVERHEAD: float = 1.25

#: What every run needs besides its arrays: the interpreter, JAX and compiled code (bytes).
FIXED_BYTES: int = 600 * 2**20

_F64 = 8


class MemoryEstimateError(ParameterError):
    """A run would need more memory than is available; the message gives both."""


def estimate_bytes(
    M: int, n_a: int, n_z: int, *, directions: int | None = None, chunk: int | None = None
) -> int:
    """Estimated peak memory (bytes) of one world solve (module docstring).

    Parameters
    ----------
    M : int
        Countries (and varieties).
    n_a : int
        Asset grid points.
    n_z : int
        Income states.
    directions : int, optional
        Jacobian directions D (default ``M + 5``, the household block).
    chunk : int, optional
        Directions solved at once, c (default: all D).

    Returns
    -------
    int
        ``FIXED_BYTES + SOLVE_OVERHEAD * 8 * ((c + 1) * (23 * state + 1.5 * blocks)
        + 6 * (D - c) * state)`` with ``state = M * n_a * n_z * M`` and
        ``blocks = M * n_z * n_a**2`` when the dense transition blocks are used
        (``n_a < 40 M``), else 0. With c = D this is the unchunked estimate.
    """
    M, n_a, n_z = int(M), int(n_a), int(n_z)
    D = M + 5 if directions is None else int(directions)
    c = D if chunk is None else max(min(int(chunk), D), min(D, 1))
    state = M * n_a * n_z * M
    blocks = M * n_z * n_a * n_a if 40 * M > n_a else 0
    arrays = (c + 1) * (23 * state + 1.5 * blocks) + 6 * (D - c) * state
    return int(FIXED_BYTES + SOLVE_OVERHEAD * _F64 * arrays)


def direction_chunk(
    M: int, n_a: int, n_z: int, directions: int | None = None, *, limit: int | None = None
) -> int:
    """The most Jacobian directions solved at once that fit in memory: all D when they fit,
    else the largest chunk c whose :func:`estimate_bytes` is within the limit.

    ``limit`` as in :func:`check_memory` (default ``HATRADE_MEMORY_LIMIT``, else the
    memory available now; no limit: all D).

    Raises
    ------
    MemoryEstimateError
        Even one direction at a time does not fit (the message gives that estimate).
    """
    D = M + 5 if directions is None else int(directions)
    limit = _resolve_limit(limit)
    if limit is None or D <= 1:
        return max(D, 0)
    for c in range(D, 0, -1):
        if estimate_bytes(M, n_a, n_z, directions=D, chunk=c) <= limit:
            return c
    check_world_memory(M, n_a, n_z, directions=D, limit=limit)
    return 1  # not reached: the check raises


def estimate_simulation_bytes(n: int, M: int, n_z: int) -> int:
    """Estimated peak memory (bytes) of a simulated panel of ``n`` households.

    Per household: the (n, M) interpolated choice probabilities, their cumulative sums and
    comparisons, the (n, Nz) income transitions, and the returned table's 13 columns.
    """
    n, M, n_z = int(n), int(M), int(n_z)
    return int(FIXED_BYTES + SOLVE_OVERHEAD * _F64 * n * (6 * M + 2 * n_z + 20))


def available_memory() -> int | None:
    """Physical memory available now (bytes): ``MemAvailable`` of /proc/meminfo, else the
    free pages of ``os.sysconf``; None when neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _limit_from_env() -> int | None:
    raw = os.environ.get("HATRADE_MEMORY_LIMIT")
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError(
            f"HATRADE_MEMORY_LIMIT = {raw!r} is not allowed: it must be a whole number of "
            "bytes (0: no memory check)."
        ) from None
    if value < 0:
        raise ParameterError(f"HATRADE_MEMORY_LIMIT = {raw!r} is not allowed: it must be >= 0.")
    return value


def _resolve_limit(limit: int | None) -> int | None:
    """The limit in bytes: ``limit``, else ``HATRADE_MEMORY_LIMIT``, else the memory
    available now; None: no check (the variable set to 0, or nothing known)."""
    if limit is not None:
        return limit
    limit = _limit_from_env()
    if limit == 0:
        return None
    return available_memory() if limit is None else limit


def _gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB"


def check_memory(estimate: int, what: str, limit: int | None = None) -> None:
    """Refuse a run whose estimated memory exceeds the limit.

    Parameters
    ----------
    estimate : int
        Bytes the run needs (:func:`estimate_bytes`, :func:`estimate_simulation_bytes`).
    what : str
        The run, for the message (e.g. ``"a world solve with M = 19, n_a = 5000, Nz = 10"``).
    limit : int, optional
        Bytes allowed. Default: ``HATRADE_MEMORY_LIMIT`` if set (0: no check), else the
        physical memory available now (:func:`available_memory`; no check when unknown).

    Raises
    ------
    MemoryEstimateError
        One line with the estimate, the limit and what to reduce.
    """
    limit = _resolve_limit(limit)
    if limit is None or estimate <= limit:
        return
    raise MemoryEstimateError(
        f"{what} needs about {_gib(estimate)} of memory, more than the {_gib(limit)} "
        "available: reduce the grid (n_a), the income states, the countries or the number "
        "of households (or set HATRADE_MEMORY_LIMIT in bytes to override)."
    )


def check_world_memory(
    M: int, n_a: int, n_z: int, *, directions: int | None = None, limit: int | None = None
) -> None:
    """:func:`check_memory` of :func:`estimate_bytes` for a world solve, naming the sizes
    (``directions=0``: households at given prices, no Jacobian). The Jacobian's directions
    can be solved in chunks (:func:`direction_chunk`), so a world is refused only when one
    direction at a time does not fit."""
    D = M + 5 if directions is None else int(directions)
    check_memory(
        estimate_bytes(M, n_a, n_z, directions=D, chunk=1),
        f"a world solve with M = {M} countries, n_a = {n_a}, Nz = {n_z} income states"
        + (" (its Jacobian one direction at a time)" if D > 1 else ""),
        limit,
    )
