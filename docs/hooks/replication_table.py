"""MkDocs hook: put the README's generated replication table into reproducing.md.

`hatrade replicate --readme README.md` writes the table between the README's
``hatrade-replicate`` markers; the site shows the same text (one source), with the figure
paths made relative to ``docs/``.
"""

from __future__ import annotations

from pathlib import Path

PLACEHOLDER = "<!-- hatrade:replication-table -->"
BEGIN = "<!-- hatrade-replicate:begin"
END = "<!-- hatrade-replicate:end -->"


def generated_section(readme: Path) -> str:
    """The README's generated section without its heading, figure paths relative to docs/."""
    text = readme.read_text(encoding="utf-8")
    a, b = text.find(BEGIN), text.find(END)
    if a < 0 or b < a:
        raise ValueError(f"{readme} has no generated replication section (markers missing)")
    body = text[text.index("\n", a) + 1 : b]
    lines = [ln for ln in body.splitlines() if not ln.startswith("## Reproducing the paper")]
    return "\n".join(lines).replace("](docs/", "](")


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 (MkDocs hook signature)
    if PLACEHOLDER not in markdown:
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    return markdown.replace(PLACEHOLDER, generated_section(readme))
