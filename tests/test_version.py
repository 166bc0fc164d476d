"""The package version (issue 20, item 5): from git through setuptools-scm, a PEP 440
string, and written into the result files (manifests, summaries, figures)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

import hatrade
from hatrade.io.folders import MANIFEST, write_manifest
from hatrade.plots.style import new_figure, save_figure

ROOT = Path(__file__).resolve().parents[1]

# PEP 440, Appendix B (the canonical regular expression, also used by `packaging`).
PEP440 = re.compile(
    r"""
    v?
    (?:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>[-_\.]?(?P<pre_l>(a|b|c|rc|alpha|beta|pre|preview))[-_\.]?(?P<pre_n>[0-9]+)?)?
        (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_\.]?(?P<post_l>post|rev|r)[-_\.]?(?P<post_n2>[0-9]+)?))?
        (?P<dev>[-_\.]?(?P<dev_l>dev)[-_\.]?(?P<dev_n>[0-9]+)?)?
    )
    (?:\+(?P<local>[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?
    """,
    re.VERBOSE | re.IGNORECASE,
)


def test_version_is_pep440():
    assert isinstance(hatrade.__version__, str)
    assert PEP440.fullmatch(hatrade.__version__), hatrade.__version__


def test_version_comes_from_git():
    """pyproject declares the version dynamic (setuptools-scm) with a PEP 440 fallback;
    ``hatrade.__version__`` reads the installed metadata ("0+unknown" without it)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert any(r.startswith("setuptools-scm") for r in meta["build-system"]["requires"])
    fallback = meta["tool"]["setuptools_scm"]["fallback_version"]
    assert PEP440.fullmatch(fallback)
    init = (ROOT / "src" / "hatrade" / "__init__.py").read_text(encoding="utf-8")
    assert 'version("hatrade")' in init and '__version__ = "0+unknown"' in init
    assert "export-subst" in (ROOT / ".gitattributes").read_text(encoding="utf-8")


def test_version_in_result_files(tmp_path):
    """Every output folder's manifest and every figure name the version that wrote them."""
    write_manifest(tmp_path, "solve", ["summary.json"])
    doc = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert doc["hatrade_version"] == hatrade.__version__
    fig = new_figure((2, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    png = save_figure(fig, tmp_path / "f.png").read_bytes()
    assert f"hatrade {hatrade.__version__}".encode() in png


def test_citation_file():
    """CITATION.cff (CFF 1.2.0; `cffconvert --validate` passes on it): the software, and the
    paper among its references."""
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["license"] == "MIT" and cff["authors"] and cff["message"]
    paper = cff["references"][0]
    assert paper["title"] == "Heterogeneous Agent Trade" and paper["year"] == 2023
    assert paper["authors"][0]["family-names"] == "Waugh" and paper["number"] == "31314"
