"""hatrade's error types, shared by every layer."""

from __future__ import annotations

__all__ = ["ParameterError", "EquilibriumError"]


class ParameterError(ValueError):
    """An input (parameter, option, file field) outside its allowed values."""


class EquilibriumError(RuntimeError):
    """The world equilibrium (or a household problem inside it) did not converge."""
