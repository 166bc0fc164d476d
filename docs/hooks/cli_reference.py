"""MkDocs hook: the CLI reference (docs/cli.md) generated from the typer command definitions.

The page's marker ``<!-- cli-reference -->`` is replaced at build time by one section per
command: its help text and a table of its arguments and options (names, type, default,
help), read from the click commands typer builds from ``hatrade.cli.app``. So the page
cannot drift from the code; ``mkdocs build --strict`` fails if a command cannot be read.
"""

from __future__ import annotations

import inspect

MARKER = "<!-- cli-reference -->"


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _param_rows(cmd, ctx) -> list[str]:
    """| option | help | rows from each parameter's own help record (names, type,
    default, as ``--help`` shows them)."""
    rows = []
    for p in cmd.params:
        if getattr(p, "hidden", False):
            continue
        rec = p.get_help_record(ctx)
        if rec is None:  # an argument without help
            rec = (p.human_readable_name, "")
        names, help_ = rec
        req = " (required)" if p.required and "required" not in help_ else ""
        rows.append(f"| `{_cell(names)}` | {_cell(help_)}{req} |")
    return rows


def cli_reference() -> str:
    """Markdown for every command of ``hatrade`` (nested groups included)."""
    import typer

    from hatrade.cli import app

    root = typer.main.get_command(app)
    out = []

    def visit(cmd, path, parent):
        ctx = cmd.make_context(path[-1], [], parent=parent, resilient_parsing=True)
        if hasattr(cmd, "list_commands"):
            if parent is not None:
                out.append(f"## `{' '.join(path)}`\n\n" + inspect.cleandoc(cmd.help or "") + "\n")
            for name in cmd.list_commands(ctx):
                visit(cmd.get_command(ctx, name), [*path, name], ctx)
            return
        out.append(f"{'#' * min(len(path), 3)} `{' '.join(path)}`\n")
        out.append(inspect.cleandoc(cmd.help or "") + "\n")
        rows = _param_rows(cmd, ctx)
        if rows:
            out.extend(["| argument or option | help |", "|---|---|", *rows, ""])

    visit(root, ["hatrade"], None)
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
