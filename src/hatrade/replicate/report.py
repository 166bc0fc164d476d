r"""The replication report: one self-contained HTML file.

:func:`render_report` turns the results of the stages of ``hatrade replicate`` into one
HTML page that needs nothing else to be read: figures are PNG images embedded as base64
``data:`` URIs, tables are HTML tables, and the page states the parameters, the package
and library versions, when and where it ran, and how long every stage took (and whether
its results were computed or loaded from the cache). A stage that failed appears with its
error. A ``--quick`` run carries a banner saying that its numbers are approximate.

Stable element ids (scripts and tests find things by them):

- ``stage-<name>`` for each stage's ``<section>`` (class ``status-ok``, ``status-partial``,
  ``status-failed``);
- ``fig-<id>`` for each ``<figure>`` (with one ``<img>``), ``tab-<id>`` for each data
  ``<table>``;
- ``reproduction`` (the "Reproducing the paper" table), ``parameters``, ``timings``,
  ``run-info``, ``quick-banner`` (only in a quick run), ``error-<stage>`` for a failed
  stage's error.

:func:`hatrade.replicate.browser.browser_check` opens a report in headless Chromium;
:mod:`hatrade.replicate.readme` writes the README's "Reproducing the paper" section.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Figure",
    "Table",
    "StageResult",
    "figure_png",
    "render_report",
    "write_report",
    "table_html",
    "format_number",
    "STATUSES",
]

log = logging.getLogger(__name__)

#: Stage statuses.
STATUSES = ("ok", "partial", "failed", "skipped")

# ----------------------------------------------------------------------------- content


@dataclass
class Figure:
    """A figure of the report.

    Attributes
    ----------
    id : str
        Element id suffix (``fig-<id>``): letters, digits, ``-`` and ``_``.
    title : str
    png : bytes
        The image (see :func:`figure_png`).
    caption : str
    file : str, optional
        Where the PNG was written (relative to the output folder).
    """

    id: str
    title: str
    png: bytes
    caption: str = ""
    file: str | None = None


@dataclass
class Table:
    """A table of the report (``tab-<id>``); ``formats`` maps column -> format spec
    (e.g. ``".4f"``, ``".2e"``, ``"%"`` for percent with two decimals)."""

    id: str
    title: str
    data: pd.DataFrame
    caption: str = ""
    formats: dict = field(default_factory=dict)
    index: bool = False


@dataclass
class StageResult:
    """What a stage returns to the report.

    Attributes
    ----------
    name : str
        Stage id (``stage-<name>``).
    title : str
    status : {'ok', 'partial', 'failed', 'skipped'}
    seconds : float
        Wall time of the stage.
    text : list of str
        Paragraphs (plain text; escaped when rendered).
    tables, figures : lists of :class:`Table` and :class:`Figure`
    files : list of str
        Result files written (relative to the output folder).
    error : str, optional
        The error of a failed stage (or of the failed parts of a partial one).
    details : str, optional
        A traceback or longer diagnostics (shown folded).
    cache : dict
        ``{"hit": n, "miss": n}``: results loaded from and computed into the cache.
    numbers : dict
        JSON-ready key numbers (gathered into ``replicate.json``).
    section : bool
        Whether the stage gets a section (False: listed under the run times only).
    """

    name: str
    title: str
    status: str = "ok"
    seconds: float = 0.0
    text: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    files: list = field(default_factory=list)
    error: str | None = None
    details: str | None = None
    cache: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    section: bool = True

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status = {self.status!r} is not allowed: use one of {STATUSES}.")


def figure_png(fig, dpi: int | None = None) -> bytes:
    """A matplotlib figure as PNG bytes (the figure's own dpi unless given)."""
    from hatrade.plots.style import png_metadata

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata=png_metadata())
    return buf.getvalue()


# ----------------------------------------------------------------------------- formatting


def format_number(x, spec: str | None = None) -> str:
    """A number for a table cell: ``spec`` (a format spec, or ``"%"``: percent with two
    decimals), else a compact general format; NaN and None as an en dash."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}" if spec is None else format(int(x), spec)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return "–"
        if spec == "%":
            return f"{x:.2f}%"
        if spec:
            return format(x, spec)
        if x == 0:
            return "0"
        ax = abs(x)
        if ax >= 1e5 or ax < 1e-3:
            return f"{x:.3e}"
        return f"{x:.4f}"
    return str(x)


def _id(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-")
    return s or "x"


def table_html(table: Table) -> str:
    """A :class:`Table` as an HTML ``<table>`` (escaped; numbers right-aligned)."""
    df = table.data
    if table.index:
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for rec in df.itertuples(index=False, name=None):
        cells = []
        for c, v in zip(df.columns, rec):
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            txt = format_number(v, table.formats.get(str(c)))
            cls = ' class="num"' if num else ""
            cells.append(f"<td{cls}>{html.escape(txt)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "\n".join(rows)
    tid = f"tab-{_id(table.id)}"
    cap = f'<p class="caption">{html.escape(table.caption)}</p>' if table.caption else ""
    return (
        f'<div class="table-wrap"><h4>{html.escape(table.title)}</h4>'
        f'<table id="{tid}" class="data" data-rows="{len(df)}">'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>{cap}</div>"
    )


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = html.escape(fig.caption or "")
    file = f' <span class="file">({html.escape(fig.file)})</span>' if fig.file else ""
    return (
        f'<figure id="fig-{_id(fig.id)}" class="figure">'
        f'<img alt="{html.escape(fig.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption><b>{html.escape(fig.title)}.</b> {cap}{file}</figcaption></figure>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1a1a1a;
background:#fafafa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.7rem;margin:.2rem 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;
margin-top:2.4rem}h3{margin-top:1.6rem}h4{margin:.8rem 0 .3rem;font-size:1rem}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:.8rem 1rem;border-radius:6px;
font-weight:600;margin:1rem 0}
.ok{color:#1b7f3b}.failed{color:#b00020}.partial{color:#a15c00}.skipped{color:#666}
section.stage{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:.4rem 1.2rem 1rem;
margin:1.4rem 0}
section.status-failed{border-color:#b00020}section.status-partial{border-color:#e0a800}
.stage-head{display:flex;justify-content:space-between;align-items:baseline;gap:1rem}
.stage-meta{font-size:.9rem;color:#555}
.error{background:#fde8ec;border-left:4px solid #b00020;padding:.5rem .8rem;white-space:pre-wrap;
font-family:ui-monospace,monospace;font-size:.85rem}
table.data{border-collapse:collapse;font-size:.86rem;margin:.2rem 0 .4rem}
table.data th,table.data td{border:1px solid #ddd;padding:.18rem .5rem}
table.data th{background:#f0f0f0;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto;margin:.6rem 0}
figure{margin:1rem 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee;background:#fff}
.figures{display:flex;flex-wrap:wrap;gap:1rem}.figures figure{flex:1 1 460px;max-width:560px}
figcaption{font-size:.85rem;color:#333}.caption{font-size:.82rem;color:#555;margin:.1rem 0}
.file{color:#777;font-family:ui-monospace,monospace;font-size:.78rem}
details{margin:.4rem 0}summary{cursor:pointer;color:#555}
nav ol{columns:2;font-size:.92rem}
#reproduction td.quantity{min-width:18rem}#reproduction td.num,#reproduction td.short{white-space:nowrap}
.refs{font-size:.82rem;color:#444;margin:.3rem 0}.refs ol{margin:0;padding-left:2.2rem}
"""


def _stage_html(st: StageResult, index: int) -> str:
    cache = st.cache or {}
    cache_txt = ""
    if cache.get("hit") or cache.get("miss"):
        cache_txt = f" · cache: {cache.get('hit', 0)} loaded, {cache.get('miss', 0)} computed"
    parts = [
        f'<section id="stage-{_id(st.name)}" class="stage status-{st.status}" '
        f'data-status="{st.status}">',
        f'<div class="stage-head"><h2>{index}. {html.escape(st.title)}</h2>'
        f'<span class="stage-meta"><span class="{st.status}">{st.status.upper()}</span>'
        f" · {st.seconds:.1f} s{cache_txt}</span></div>",
    ]
    if st.error:
        parts.append(f'<div id="error-{_id(st.name)}" class="error">{html.escape(st.error)}</div>')
    if st.details:
        parts.append(
            f'<details><summary>details</summary><pre class="error">'
            f"{html.escape(st.details)}</pre></details>"
        )
    for p in st.text:
        parts.append(f"<p>{html.escape(p)}</p>")
    for t in st.tables:
        parts.append(table_html(t))
    if st.figures:
        parts.append(
            '<div class="figures">' + "".join(_figure_html(f) for f in st.figures) + "</div>"
        )
    if st.files:
        items = "".join(f"<li>{html.escape(f)}</li>" for f in st.files)
        parts.append(
            f'<details><summary>{len(st.files)} result files</summary><ul class="file">'
            f"{items}</ul></details>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _kv_table(tid: str, title: str, rows: Iterable[tuple[str, Any]]) -> str:
    df = pd.DataFrame(
        [(k, format_number(v) if not isinstance(v, str) else v) for k, v in rows],
        columns=["item", "value"],
    )
    return table_html(Table(tid, title, df))


def _head(
    stages: Sequence[StageResult], title: str, quick: bool, quick_note: str, intro: Sequence[str]
) -> list[str]:
    """Title, quick banner, intro paragraphs and the status line."""
    n_ok = sum(s.status == "ok" for s in stages)
    total = sum(s.seconds for s in stages)
    head = [f"<h1>{html.escape(title)}</h1>"]
    if quick:
        head.append(
            '<div id="quick-banner" class="banner">APPROXIMATE RESULTS (--quick). '
            + html.escape(
                quick_note or "A coarser grid was used; numbers differ from the full replication."
            )
            + "</div>"
        )
    for p in intro:
        head.append(f"<p>{html.escape(p)}</p>")
    status_line = (
        f"{n_ok} of {len(stages)} stages ok"
        + "".join(
            f", {sum(s.status == k for s in stages)} {k}"
            for k in ("partial", "failed", "skipped")
            if any(s.status == k for s in stages)
        )
        + f"; stage time {total:.1f} s."
    )
    head.append(f'<p id="status-line">{html.escape(status_line)}</p>')
    return head


def _nav(stages: Sequence[StageResult], reproduction: bool) -> list[str]:
    """The table of contents."""
    nav = ["<nav><b>Contents</b><ol>"]
    if reproduction:
        nav.append('<li><a href="#reproduction-section">Reproducing the paper</a></li>')
    for s in stages:
        if not s.section:
            continue
        nav.append(
            f'<li><a href="#stage-{_id(s.name)}">{html.escape(s.title)}</a> '
            f'<span class="{s.status}">({s.status})</span></li>'
        )
    nav.append(
        '<li><a href="#parameters">Parameters</a></li>'
        '<li><a href="#timings">Run times</a></li></ol></nav>'
    )
    return nav


#: Column order of the reproduction table in the report: numbers first, the source (a
#: number into the list of sources under the table) last.
_REPRODUCTION_ORDER = ("quantity", "published", "ours", "difference", "tolerance", "agrees")


def _reproduction_cell(col: str, v, table: Table, sources: list, notes: list) -> str:
    """One cell of the reproduction table: sources and long notes as links to the lists."""
    if col == "source":
        k = sources.index(str(v)) + 1
        return (
            f'<td class="short"><a href="#source-{k}" title="{html.escape(str(v))}">[{k}]</a></td>'
        )
    if col == "note" and str(v) in notes:
        k = notes.index(str(v)) + 1
        return f'<td class="short"><a href="#note-{k}">note {k}</a></td>'
    if col == "quantity":
        return f'<td class="quantity">{html.escape(str(v))}</td>'
    num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    txt = (
        "" if col == "note" and not isinstance(v, str) else format_number(v, table.formats.get(col))
    )
    return f'<td class="{"num" if num else "short"}">{html.escape(txt)}</td>'


def _reproduction_html(reproduction: Table) -> str:
    """The "Reproducing the paper" section (its table has the id ``reproduction``).

    The quantity column gets the room; sources are short links ``[k]`` into the list of
    sources under the table, and notes longer than a country name (``at XYZ``) are links
    ``note k`` into the list of notes (as in the README's table).
    """
    df = reproduction.data.reset_index() if reproduction.index else reproduction.data
    cols = [c for c in _REPRODUCTION_ORDER if c in df.columns]
    cols += [c for c in df.columns if c not in cols and c not in ("note", "source")]
    cols += [c for c in ("note", "source") if c in df.columns]
    sources = list(dict.fromkeys(str(x) for x in df["source"])) if "source" in df else []
    notes = []
    if "note" in df:
        notes = list(
            dict.fromkeys(
                str(n) for n in df["note"] if isinstance(n, str) and n and not n.startswith("at ")
            )
        )
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = [
        "<tr>"
        + "".join(
            _reproduction_cell(str(c), v, reproduction, sources, notes) for c, v in zip(cols, rec)
        )
        + "</tr>"
        for rec in df[cols].itertuples(index=False, name=None)
    ]
    cap = reproduction.caption
    lists = "".join(
        f'<div id="reproduction-{name}" class="refs"><p class="caption">{label}</p><ol>'
        + "".join(f'<li id="{name[:-1]}-{k}">{html.escape(x)}</li>' for k, x in enumerate(xs, 1))
        + "</ol></div>"
        for name, label, xs in (("sources", "Sources", sources), ("notes", "Notes", notes))
        if xs
    )
    return (
        '<section id="reproduction-section" class="stage">'
        "<h2>Reproducing the paper</h2>"
        f'<div class="table-wrap"><h4>{html.escape(reproduction.title)}</h4>'
        f'<table id="reproduction" class="data" data-rows="{len(df)}">'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
        + (f'<p class="caption">{html.escape(cap)}</p>' if cap else "")
        + f"{lists}</div></section>"
    )


def _timings_html(stages: Sequence[StageResult], timings: Sequence[Table], run_info: dict) -> str:
    """The "Run times" section: time per stage, further tables, the run's facts."""
    tim = pd.DataFrame(
        {
            "stage": [s.title for s in stages],
            "status": [s.status for s in stages],
            "seconds": [s.seconds for s in stages],
            "results loaded from cache": [int((s.cache or {}).get("hit", 0)) for s in stages],
            "results computed": [int((s.cache or {}).get("miss", 0)) for s in stages],
        }
    )
    return (
        '<section id="timings" class="stage"><h2>Run times</h2>'
        + table_html(Table("timings-table", "Time per stage", tim, formats={"seconds": ".1f"}))
        + "".join(table_html(t) for t in timings)
        + _kv_table("run-info", "Run", run_info.items())
        + "</section>"
    )


def render_report(
    stages: Sequence[StageResult],
    *,
    title: str,
    quick: bool = False,
    quick_note: str = "",
    parameters: Sequence[Table] = (),
    reproduction: Table | None = None,
    run_info: dict | None = None,
    intro: Sequence[str] = (),
    timings: Sequence[Table] = (),
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    stages : the stage results, in order.
    title : page title.
    quick : whether this is a ``--quick`` run (adds the "approximate" banner).
    quick_note : what the quick run changes (shown in the banner).
    parameters : tables of the parameters used.
    reproduction : the "Reproducing the paper" table (published next to ours).
    run_info : version, timings, machine (key -> value, shown as a table).
    intro : paragraphs shown under the title.
    timings : more tables for the run-time section (e.g. the time of each result).
    """
    body = _head(stages, title, quick, quick_note, intro) + _nav(stages, reproduction is not None)
    if reproduction is not None:
        body.append(_reproduction_html(reproduction))
    for k, s in enumerate([s for s in stages if s.section], 1):
        body.append(_stage_html(s, k))
    body.append('<section id="parameters" class="stage"><h2>Parameters</h2>')
    for t in parameters:
        body.append(table_html(t))
    body.append("</section>")
    body.append(_timings_html(stages, timings, dict(run_info or {})))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def write_report(path, html_text: str) -> Path:
    """Write the report atomically (temporary file + os.replace)."""
    from hatrade.io.atomic import write_text

    return write_text(Path(path), html_text)
