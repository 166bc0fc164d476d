"""JAX's persistent compilation cache, switched on for a ``with`` block only.

The command line keeps compiled functions between processes with
:func:`jax_compilation_cache`; a program that merely imports hatrade never has it switched
on.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["jax_compilation_cache", "jax_cache_dir", "JAX_CACHE_OPTIONS"]

#: JAX options set by :func:`jax_compilation_cache` (restored afterwards).
JAX_CACHE_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@contextlib.contextmanager
def jax_compilation_cache(path, *, min_compile_seconds: float = 0.5):
    """Use JAX's persistent compilation cache in ``path`` inside the ``with`` block only.

    ``hatrade replicate`` compiles the same functions (the world residual and Jacobian, the
    household elasticities, the welfare solves, ...) in every new process: a large part of a
    cold run. With this cache a later process loads the compiled executables
    instead (the results are the same: only compilation is skipped). The command line
    enables it (``--compile-cache``, the default) in ``<results cache>/jax``; a program that
    imports hatrade is not affected unless it uses this context manager, which restores
    JAX's previous settings (and resets its cache handle) on exit.

    Parameters
    ----------
    path : path-like
        Folder of the compiled executables (created when needed).
    min_compile_seconds : float
        Only compilations that took at least this long are stored.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    old = {k: getattr(jax.config, k) for k in JAX_CACHE_OPTIONS}
    Path(path).mkdir(parents=True, exist_ok=True)
    cc.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:
        yield Path(path)
    finally:
        for k, v in old.items():
            jax.config.update(k, v)
        cc.reset_cache()


def jax_cache_dir() -> str | None:
    """JAX's current compilation cache folder (None: off)."""
    import jax

    return jax.config.jax_compilation_cache_dir
