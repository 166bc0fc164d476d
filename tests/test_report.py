"""The HTML report (issue 6): self-contained, rendered in a real headless browser.

The browser tests need Chromium (Debian: ``apt-get install -y chromium``; CI installs it).
They fail, and do not skip, when it is missing.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from hatrade.replicate.browser import browser_check, find_chromium
from hatrade.replicate.readme import README_BEGIN, README_END, readme_section, update_readme
from hatrade.replicate.report import (
    Figure,
    StageResult,
    Table,
    figure_png,
    format_number,
    render_report,
    write_report,
)


def _fig(title: str, seed: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(4, 3), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.linspace(0, 1, 20)
    ax.plot(x, np.sin(6 * x + seed))
    ax.set_title(title)
    return figure_png(fig)


@pytest.fixture(scope="module")
def stages():
    ok = StageResult(
        "alpha",
        "First stage",
        seconds=1.25,
        cache={"hit": 1, "miss": 2},
        text=["Some <b>text</b> & more."],
        tables=[
            Table(
                "alpha-t",
                "Numbers",
                pd.DataFrame(
                    {"name": ["a<script>", "b"], "value": [1.23456789, np.nan], "count": [3, 4]}
                ),
                "A caption",
                formats={"value": ".3f"},
            )
        ],
        figures=[
            Figure("alpha-f1", "Figure one", _fig("one", 0), "caption one", "alpha/f1.png"),
            Figure("alpha-f2", "Figure two", _fig("two", 1)),
        ],
        files=["alpha/table.csv"],
    )
    partial = StageResult(
        "beta",
        "Second stage",
        status="partial",
        seconds=2.0,
        error="log: RuntimeError: did not converge",
        tables=[Table("beta-t", "More", pd.DataFrame({"x": [1.0]}))],
        figures=[Figure("beta-f", "Figure three", _fig("three", 2))],
    )
    failed = StageResult(
        "gamma",
        "Third stage",
        status="failed",
        seconds=0.5,
        error="ValueError: broken <input>",
        details="Traceback ...",
    )
    return [ok, partial, failed]


def _render(stages, quick=True):
    repro = pd.DataFrame(
        {
            "quantity": ["beta"],
            "source": ["file"],
            "published": [0.93],
            "ours": [0.9301],
            "difference": [1e-4],
            "tolerance": [1e-6],
            "agrees": ["no"],
            "note": [""],
        }
    )
    return render_report(
        stages,
        title="Test report",
        quick=quick,
        quick_note="coarse grid",
        parameters=[
            Table("params", "Parameters", pd.DataFrame({"parameter": ["gamma"], "value": [1.45]}))
        ],
        reproduction=Table("reproduction", "Published vs ours", repro),
        run_info={"hatrade version": "0.1", "seconds": 3.75},
    )


def test_report_is_self_contained_and_escaped(stages):
    text = _render(stages)
    # every image is inline: no external resources at all
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == 3
    for b64 in imgs:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script>" not in text.split("<style>")[0] + text.split("</style>")[1]
    assert "a&lt;script&gt;" in text and "broken &lt;input&gt;" in text
    for sid in (
        "stage-alpha",
        "stage-beta",
        "stage-gamma",
        "quick-banner",
        "reproduction",
        "parameters",
        "timings",
        "error-gamma",
        "fig-alpha-f1",
        "tab-alpha-t",
    ):
        assert f'id="{sid}"' in text, sid
    assert 'class="stage status-failed"' in text and 'class="stage status-partial"' in text
    assert "APPROXIMATE" in text
    assert "quick-banner" not in _render(stages, quick=False)


def test_format_number():
    assert format_number(1.23456) == "1.2346"
    assert format_number(float("nan")) == "–" and format_number(None) == "–"
    assert format_number(1e-7) == "1.000e-07"
    assert format_number(12.3456, "%") == "12.35%"
    assert format_number(3) == "3" and format_number(True) == "yes"


def test_report_in_headless_chromium(stages, tmp_path):
    """Render the page in Chromium: every figure's image decodes and every table has rows."""
    assert find_chromium(), (
        "Chromium is required for this test: apt-get install -y chromium (or set $CHROMIUM)"
    )
    path = write_report(tmp_path / "report.html", _render(stages))
    info = browser_check(path, screenshot=tmp_path / "shot.png")
    assert info["title"] == "Test report"
    images = {i["id"]: i for i in info["images"]}
    assert set(images) == {"fig-alpha-f1", "fig-alpha-f2", "fig-beta-f"}
    for i in images.values():
        assert i["complete"] and i["width"] == 320 and i["height"] == 240, i
        assert i["shownWidth"] > 100
    tables = {t["id"]: t for t in info["tables"]}
    for tid in (
        "tab-alpha-t",
        "tab-beta-t",
        "reproduction",
        "tab-params",
        "tab-timings-table",
        "tab-run-info",
    ):
        assert tables[tid]["rows"] >= 1, tid
    assert tables["tab-timings-table"]["rows"] == 3
    sections = {s["id"]: s["status"] for s in info["sections"]}
    assert sections["stage-alpha"] == "ok" and sections["stage-gamma"] == "failed"
    assert info["banner"] and "APPROXIMATE" in info["banner"]
    shot = (tmp_path / "shot.png").read_bytes()
    assert shot.startswith(b"\x89PNG")
    from PIL import Image  # matplotlib depends on pillow

    img = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), float)
    assert img.std() > 5  # not a blank page


def test_browser_check_fails_clearly_without_chromium(tmp_path):
    from hatrade.replicate.browser import BrowserError

    p = write_report(tmp_path / "r.html", "<html><body></body></html>")
    with pytest.raises(BrowserError, match="apt-get install"):
        browser_check(p, chromium=str(tmp_path / "no-such-chromium"))


def test_readme_section_and_update(tmp_path):
    repro = pd.DataFrame(
        {
            "quantity": ["beta", "theta", "gain"],
            "source": ["prices.csv", "docs/model.md", "prices.csv"],
            "published": [0.9293630720608874, -4.23, 1.35],
            "ours": [0.92936, "n/a", 1.06],
            "difference": [-3e-6, None, -0.29],
            "agrees": ["no", "–", "no"],
            "note": ["", "", "see the docs"],
        }
    )
    text = readme_section(
        repro,
        figures=[("Fit", "docs/figures/fit.png")],
        run={
            "version": "1.0",
            "date": "2024-01-01",
            "quick": False,
            "seconds": 600.0,
            "stages": [("Equilibria", 61.2)],
        },
        notes=["A closing remark."],
    )
    assert "| beta | [1] | 0.9293631 | 0.92936 | -3e-06 | no |  |" in text
    assert "| gain | [1] | 1.35 | 1.06 | -0.29 | no | note 1 |" in text
    assert "[1] prices.csv; [2] docs/model.md" in text and "Note 1: see the docs." in text
    assert "A closing remark." in text and "Equilibria 61" in text and "full run" in text
    assert "![Fit](docs/figures/fit.png)" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# X\n\nintro\n\n{README_BEGIN}\nold\n{README_END}\n\nrest\n")
    update_readme(readme, text)
    new = readme.read_text()
    assert "old" not in new and "| theta |" in new and new.endswith("rest\n")
    assert new.index(README_BEGIN) < new.index("| beta") < new.index(README_END)
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers|generated section"):
        update_readme(readme, text)


def test_reproduction_table_reads_at_a_glance_on_a_laptop(stages, tmp_path):
    """The paper's reproduction table (every published number, long notes) at 1366 x 768:
    no quantity cell over two lines, numbers on one line, sources as links [k] into the
    list under the table, no sideways scrolling (issue 20, item 4)."""
    from hatrade.data.published import WELFARE_GAP_NOTE
    from hatrade.replicate import paper_setup
    from hatrade.replicate.table import reproduction_table

    rep = reproduction_table(paper_setup(), {}).astype(object)
    numeric = rep["published"].map(lambda v: isinstance(v, float))
    rep.loc[numeric, "ours"] = rep.loc[numeric, "published"].astype(float) + 0.001234
    rep.loc[numeric, "difference"] = 0.001234
    rep.loc[rep["quantity"].str.contains(", log"), "note"] = WELFARE_GAP_NOTE
    page = render_report(
        stages, title="Layout", reproduction=Table("reproduction", "Published vs ours", rep)
    )
    sources = list(dict.fromkeys(rep["source"]))
    for k in range(1, len(sources) + 1):
        assert f'href="#source-{k}"' in page and f'id="source-{k}"' in page
    assert f'href="#source-{len(sources) + 1}"' not in page
    assert 'href="#note-1"' in page and 'id="note-1"' in page
    path = write_report(tmp_path / "report.html", page)
    info = browser_check(path, window=(1366, 768), screenshot=tmp_path / "laptop.png")
    table = {t["id"]: t for t in info["tables"]}["reproduction"]
    assert table["rows"] == len(rep) and not table["overflows"], table
    head = ["quantity", "published", "ours", "difference", "tolerance", "agrees", "note"]
    lines = dict(zip(head + ["source"], table["colLines"]))
    assert 1 <= lines["quantity"] <= 2, lines
    assert all(lines[c] == 1 for c in head[1:] + ["source"]), lines
    assert info["pageWidth"] <= info["viewportWidth"] == 1366, info
