"""The package's architecture rules (issue 15), checked on the source tree.

- The import contracts of ``[tool.importlinter]`` in pyproject.toml hold: the layers
  cli > replicate > calibration > io > plots > welfare > analysis > solve > core > data,
  no import cycles inside any package, private modules imported only from their own package.
- No module uses another module's private names (``from hatrade.x import _name`` or
  ``x._name`` on an imported hatrade module).
- No module is over :data:`MAX_MODULE_LINES` lines and no function over
  :data:`MAX_FUNCTION_LINES` lines, except the entries of :data:`MODULE_LINES_ALLOWED` and
  :data:`FUNCTION_LINES_ALLOWED`, which may not grow and must be removed once they fit.

To refresh the two allow-lists after a split, run ``python tests/test_architecture.py``: it
prints them as they are for the current tree, ready to paste below.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "hatrade"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Modules over MAX_MODULE_LINES today: path relative to src/ -> its line count. An entry may
# not grow; remove it once the module fits.
MODULE_LINES_ALLOWED: dict[str, int] = {}

# Functions over MAX_FUNCTION_LINES today: "path relative to src/::qualified name" -> its
# length in lines (from the `def` line to the last line, without the docstring). An entry
# may not grow; remove it once the function fits.
FUNCTION_LINES_ALLOWED: dict[str, int] = {}


# ------------------------------------------------------------------------------------------
# The source tree


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


MODULES: dict[str, Path] = {_module_name(p): p for p in _source_files()}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def _inside(importer: str, package: str) -> bool:
    """Whether module `importer` is `package` itself or lies inside it."""
    return importer == package or importer.startswith(package + ".")


# ------------------------------------------------------------------------------------------
# Private names


def _resolve_from(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` statement in module `importer`."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _private_use(importer: str, owner: str, name: str) -> bool:
    """Whether using `owner`'s name `name` from module `importer` breaks privacy.

    A private name is private to its module; a private submodule of a package is private to
    that package (the ``private_modules`` import contract checks those too).
    """
    if not _is_private(name) or owner == importer:
        return False
    if f"{owner}.{name}" in MODULES:  # a private submodule
        return not _inside(importer, owner)
    return True


def _bind_imports(module: str, node: ast.Import | ast.ImportFrom, bound: dict[str, str]) -> None:
    """Record in `bound` the local names that `node` binds to hatrade modules."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "hatrade":
                bound[alias.asname or "hatrade"] = alias.name if alias.asname else "hatrade"
        return
    owner = _resolve_from(module, node)
    for alias in node.names:
        if f"{owner}.{alias.name}" in MODULES:
            bound[alias.asname or alias.name] = f"{owner}.{alias.name}"


def _private_uses_in(module: str, tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, what)`` for each use of another hatrade module's private names in `tree`."""
    found = []
    bound: dict[str, str] = {}  # local name -> the hatrade module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            _bind_imports(module, node, bound)
        if isinstance(node, ast.ImportFrom):
            owner = _resolve_from(module, node)
            if owner.split(".")[0] == "hatrade":
                found += [
                    (node.lineno, f"from {owner} import {alias.name}")
                    for alias in node.names
                    if _private_use(module, owner, alias.name)
                ]
    for node in ast.walk(tree):
        base = _dotted(node.value) if isinstance(node, ast.Attribute) else None
        if base is None or base.split(".")[0] not in bound:
            continue
        head, _, rest = base.partition(".")
        owner = bound[head] + (f".{rest}" if rest else "")
        if owner in MODULES and _private_use(module, owner, node.attr):
            found.append((node.lineno, f"{base}.{node.attr} ({owner})"))
    return found


def private_name_uses() -> list[str]:
    """Every use of another hatrade module's private names, as ``file:line: what``."""
    found = set()
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(SRC)
        found.update(f"{where}:{line}: {what}" for line, what in _private_uses_in(module, tree))
    return sorted(found)


def test_no_module_uses_another_modules_private_names():
    uses = private_name_uses()
    assert not uses, (
        "Modules use other modules' private names; make the name public in the right layer "
        "or move the code:\n" + "\n".join(uses)
    )


# ------------------------------------------------------------------------------------------
# Import contracts


def test_import_contracts_hold():
    """``lint-imports`` with the contracts of pyproject.toml (also run on its own in CI)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())",
            str(ROOT / "pyproject.toml"),
            "--no-cache",
            "--no-logo",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"lint-imports failed:\n{run.stdout}\n{run.stderr}"


# ------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Size:
    key: str
    lines: int


def module_sizes() -> list[Size]:
    return [
        Size(str(path.relative_to(SRC)), len(path.read_text(encoding="utf-8").splitlines()))
        for path in MODULES.values()
    ]


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` to the function's last line, less its docstring's lines."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def function_sizes() -> list[Size]:
    sizes = []

    def visit(node: ast.AST, prefix: str, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                sizes.append(Size(f"{where}::{name}", _function_lines(child)))
                visit(child, f"{name}.<locals>.", where)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", where)
            else:
                visit(child, prefix, where)

    for path in MODULES.values():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        visit(tree, "", str(path.relative_to(SRC)))
    return sizes


def _check_sizes(sizes: list[Size], limit: int, allowed: dict[str, int], what: str) -> list[str]:
    problems = []
    by_key = {s.key: s.lines for s in sizes}
    for key, lines in sorted(by_key.items()):
        if lines <= limit:
            continue
        if key not in allowed:
            problems.append(f"{key}: {lines} lines (limit {limit}); split it")
        elif lines > allowed[key]:
            problems.append(f"{key}: {lines} lines, grew from {allowed[key]}; split it")
    for key in sorted(allowed):
        if key not in by_key:
            problems.append(f"{key}: in the {what} allow-list but gone; remove the entry")
        elif by_key[key] <= limit:
            problems.append(f"{key}: {by_key[key]} lines now fits; remove the allow-list entry")
    return problems


def test_no_module_over_the_line_limit():
    problems = _check_sizes(module_sizes(), MAX_MODULE_LINES, MODULE_LINES_ALLOWED, "module")
    assert not problems, "\n".join(problems)


def test_no_function_over_the_line_limit():
    problems = _check_sizes(
        function_sizes(), MAX_FUNCTION_LINES, FUNCTION_LINES_ALLOWED, "function"
    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "allowed, limit",
    [(MODULE_LINES_ALLOWED, MAX_MODULE_LINES), (FUNCTION_LINES_ALLOWED, MAX_FUNCTION_LINES)],
)
def test_allow_lists_hold_only_offenders(allowed, limit):
    assert all(lines > limit for lines in allowed.values())


def _print_allow_list(name: str, sizes: list[Size], limit: int) -> None:
    print(f"{name}: dict[str, int] = {{")
    for size in sorted(sizes, key=lambda s: s.key):
        if size.lines > limit:
            print(f'    "{size.key}": {size.lines},')
    print("}")


if __name__ == "__main__":
    _print_allow_list("MODULE_LINES_ALLOWED", module_sizes(), MAX_MODULE_LINES)
    _print_allow_list("FUNCTION_LINES_ALLOWED", function_sizes(), MAX_FUNCTION_LINES)
    for use in private_name_uses():
        print("private name use:", use)
