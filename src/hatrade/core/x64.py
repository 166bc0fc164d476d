"""JAX configuration for hatrade's entry points.

hatrade computes in float64. Public entry points are wrapped with :func:`enable_x64`, which
switches 64-bit mode on for the duration of the call only (``jax.enable_x64`` context),
so importing hatrade never changes the caller's JAX configuration.
"""

from __future__ import annotations

import functools

import jax


def enable_x64(fn):
    """Decorator: run ``fn`` with ``jax_enable_x64`` on, restoring the caller's setting."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if jax.config.jax_enable_x64:
            return fn(*args, **kwargs)
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper
