"""Small checks shared by the readers of TOML input files (batch, config, micro targets).

Each caller keeps its own error class (``BatchError``, ``ParameterError``, ``ConfigError``)
and its own message prefix; these helpers only build the common parts of the messages:

* :func:`loads_toml` -- TOML text to a dict, ``"<source>: not valid TOML: <detail>"``;
* :func:`check_table` -- a (possibly missing) sub-table such as ``[options]``: a dict whose
  keys are among the allowed ones;
* :func:`check_keys` -- keys of a dict among the allowed ones;
* :class:`Rule` with :data:`BOOLEAN`, :data:`NUMBER`, :data:`FRACTION` and :func:`integer`
  -- typed range checks of single values (no coercion: a boolean or a string is not a
  number, a float such as 20.7 or 20.0 is not an integer, NaN and infinities are not
  numbers), and :meth:`Rule.from_problem` for the API's own range checks; :func:`option_problems` applies a set of rules to a table and
  returns one ``"<key> = <value>: must be ..."`` line per violation.
"""

from __future__ import annotations

import math
import numbers
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "loads_toml",
    "check_table",
    "check_keys",
    "Rule",
    "BOOLEAN",
    "NUMBER",
    "FRACTION",
    "integer",
    "option_problems",
]


def loads_toml(text: str, source: str, error: type[Exception], end: str = "") -> dict:
    """Parse TOML ``text``; a syntax error becomes ``error("<source>: not valid TOML: ...")``.

    ``end`` is appended to the message (e.g. ``"."``).
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{source}: not valid TOML: {err}{end}") from None


def check_keys(
    table: Mapping, allowed: Iterable[str], where: str, error: type[Exception], end: str = "."
) -> None:
    """Raise ``error("<where>: unknown key(s) [...]; allowed: a, b<end>")`` for keys not allowed.

    The unknown keys are listed sorted; the allowed ones in the given order.
    """
    allowed = tuple(allowed)
    bad = sorted(set(table) - set(allowed))
    if bad:
        raise error(f"{where}: unknown key(s) {bad}; allowed: {', '.join(allowed)}{end}")


def check_table(
    value, allowed: Iterable[str], where: str, error: type[Exception], end: str = "."
) -> dict:
    """A sub-table such as ``[options]``: missing or empty gives ``{}``.

    Raises ``error("<where> must be a table<end>")`` when ``value`` is not a dict, and the
    :func:`check_keys` error for keys not in ``allowed``. Returns the table itself.
    """
    table = value or {}
    if not isinstance(table, dict):
        raise error(f"{where} must be a table{end}")
    check_keys(table, allowed, where, error, end=end)
    return table


@dataclass(frozen=True)
class Rule:
    """A typed check of one value: ``ok(value)`` and what is required, e.g. ``"true or false"``."""

    ok: Callable[[object], bool]
    need: str
    optional: bool = False

    def problem(self, key: str, value) -> str | None:
        """``"<key> = <value!r>: must be <need>"``, or None when ``value`` passes.

        With ``optional``, None passes too.
        """
        if (self.optional and value is None) or self.ok(value):
            return None
        return f"{key} = {value!r}: must be {self.need}"

    def or_none(self) -> Rule:
        """The same rule, with None allowed."""
        return Rule(self.ok, self.need, optional=True)

    @classmethod
    def from_problem(cls, problem: Callable[[str, object], str | None], name: str) -> Rule:
        """A rule from an API check ``problem(name, value)`` that returns None or a message
        ending ``"... must be <need>."``: the API's range, so that files and the API agree."""
        need = (problem(name, None) or "").split(" must be ", 1)[-1].rstrip(".")
        return cls(lambda v: problem(name, v) is None, need)


def _is_number(v) -> bool:
    """A finite real number: Python or NumPy, or a 0-d numeric array (API callers pass
    results' scalars); never a boolean or a string."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return False
    if not isinstance(v, numbers.Real):
        dtype = getattr(v, "dtype", None)
        if getattr(v, "shape", None) != () or getattr(dtype, "kind", None) not in ("i", "u", "f"):
            return False
    return math.isfinite(float(v))


def _is_integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


#: ``true`` or ``false`` (a TOML boolean).
BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
#: A finite number (an integer or a float; not a boolean or a string).
NUMBER = Rule(_is_number, "a finite number")
#: A number (not a boolean) strictly between 0 and 1, e.g. a tolerance.
FRACTION = Rule(lambda v: _is_number(v) and 0 < float(v) < 1, "a number in (0, 1)")


def integer(lo: int) -> Rule:
    """An integer (not a boolean) ``>= lo``."""
    return Rule(lambda v: _is_integer(v) and v >= lo, f"an integer >= {lo}")


def option_problems(table: Mapping, rules: Mapping[str, Rule]) -> list[str]:
    """One ``"<key> = <value>: must be ..."`` line per key of ``table`` that breaks its rule.

    Keys absent from ``table`` are not checked; the lines follow the order of ``rules``.
    """
    return [
        msg
        for key, rule in rules.items()
        if key in table and (msg := rule.problem(key, table[key])) is not None
    ]
