"""hatrade's error types, shared by every layer, and the checks of identifiers.

Identifiers (country codes, run and configuration names) end up in file and folder names,
so each is checked where it enters (:class:`~hatrade.core.params.World`, configuration and
batch files) by :func:`check_identifier`: a code such as ``H/../../x`` is refused before
any path is built from it.
"""

from __future__ import annotations

import re

__all__ = [
    "ParameterError",
    "EquilibriumError",
    "IDENTIFIER_PATTERN",
    "IDENTIFIER_RULE",
    "check_identifier",
]


class ParameterError(ValueError):
    """An input (parameter, option, file field) outside its allowed values."""


class EquilibriumError(RuntimeError):
    """The world equilibrium (or a household problem inside it) did not converge."""


#: Country codes and run names: a letter or digit, then letters, digits, '.', '_', '+' or
#: '-', 1 to 64 characters in all (no '/', no '..', no spaces: safe as a file name).
IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

#: The pattern in words, for messages.
IDENTIFIER_RULE = (
    "1-64 characters: letters, digits, '.', '_', '+' or '-', starting with a letter "
    "or digit, without '..'"
)


def check_identifier(value, field: str) -> str:
    """Return ``value`` when it is a safe identifier, else raise :class:`ParameterError`.

    Parameters
    ----------
    value : object
        A country code or a run name (used in file and folder names).
    field : str
        The field named in the message (e.g. ``"countries[1]"``, ``"name"``).

    Returns
    -------
    str

    Raises
    ------
    ParameterError
        When ``value`` is not a string matching :data:`IDENTIFIER_PATTERN` or contains
        ``..``; the one-line message names the field and the rule.
    """
    if not isinstance(value, str) or IDENTIFIER_PATTERN.fullmatch(value) is None or ".." in value:
        raise ParameterError(f"{field} = {value!r} is not allowed: it must be {IDENTIFIER_RULE}.")
    return value
