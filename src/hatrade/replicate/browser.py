"""The report in a real browser: :func:`browser_check` opens it in headless Chromium.

From inside the browser, a small script records which images decoded (their natural and
displayed size), which tables have rows, every section's status and the quick banner; tests
use it to check that the report shows everything.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["browser_check", "find_chromium", "BrowserError"]


class BrowserError(RuntimeError):
    """Chromium is missing or could not render the page."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in (
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
        "chrome",
        "headless_shell",
    ):
        p = shutil.which(name)
        if p:
            return p
    return None


_CHECK_SCRIPT = r"""
<script>
window.addEventListener('load', function () {
  var out = {title: document.title, images: [], tables: [], sections: [], banner: null,
             bodyText: document.body.innerText.length};
  document.querySelectorAll('figure').forEach(function (f) {
    var img = f.querySelector('img');
    out.images.push({id: f.id, complete: !!(img && img.complete),
                     width: img ? img.naturalWidth : 0, height: img ? img.naturalHeight : 0,
                     shownWidth: img ? img.getBoundingClientRect().width : 0});
  });
  document.querySelectorAll('table').forEach(function (t) {
    var lines = [];
    if (t.tBodies.length) {
      Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
        Array.prototype.forEach.call(r.cells, function (c, k) {
          var st = getComputedStyle(c), lh = parseFloat(st.lineHeight);
          var h = c.getBoundingClientRect().height - parseFloat(st.paddingTop)
                  - parseFloat(st.paddingBottom) - parseFloat(st.borderTopWidth)
                  - parseFloat(st.borderBottomWidth);
          var n = lh > 0 ? Math.round(h / lh) : 0;
          lines[k] = Math.max(lines[k] || 0, n);
        });
      });
    }
    var wrap = t.parentElement;
    out.tables.push({id: t.id, rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
                     cols: t.tHead && t.tHead.rows.length ? t.tHead.rows[0].cells.length : 0,
                     colLines: lines, width: t.getBoundingClientRect().width,
                     overflows: !!wrap && t.getBoundingClientRect().width > wrap.clientWidth + 1});
  });
  out.viewportWidth = window.innerWidth;
  out.pageWidth = document.documentElement.scrollWidth;
  document.querySelectorAll('section').forEach(function (s) {
    out.sections.push({id: s.id, status: s.getAttribute('data-status')});
  });
  var b = document.getElementById('quick-banner');
  out.banner = b ? b.innerText : null;
  var pre = document.createElement('pre');
  pre.id = '__hatrade_check__';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _executable(chromium: str | None) -> str:
    """The Chromium executable to use (``chromium`` or :func:`find_chromium`)."""
    exe = chromium or find_chromium()
    if exe and not Path(exe).is_file():
        exe = shutil.which(exe)
    if not exe:
        raise BrowserError(
            f"no Chromium found{f' at {chromium}' if chromium else ''}: install "
            "it (Debian/Ubuntu: apt-get install -y chromium) or set $CHROMIUM "
            "to its path."
        )
    return exe


def _run(cmd: list, timeout: float, env: dict, what: str) -> subprocess.CompletedProcess:
    """Run Chromium; a failure to start or a timeout is a :class:`BrowserError`."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BrowserError(f"{what}: {err}") from None


def browser_check(
    html_path,
    *,
    chromium: str | None = None,
    timeout: float = 120.0,
    screenshot=None,
    window: tuple[int, int] = (1280, 2400),
) -> dict:
    """Open a report in headless Chromium and describe it from inside the browser.

    A copy of the page with a small script is loaded; after the ``load`` event the script
    records every ``<figure>``'s image (whether it decoded, natural and displayed size),
    every ``<table>`` (rows, columns) and every ``<section>`` (id, status), and the quick
    banner's text. Optionally a screenshot of the original page is written.

    Parameters
    ----------
    html_path : path of the report.
    chromium : executable (default :func:`find_chromium`).
    timeout : seconds per Chromium call.
    screenshot : path-like, optional; PNG of the first ``window`` pixels of the page.
    window : (width, height) of the browser window in px (1366 x 768: a laptop screen).

    Returns
    -------
    dict
        ``title``, ``images`` (id, complete, width, height, shownWidth), ``tables`` (id,
        rows, cols, ``colLines``: per column the most text lines of a body cell, ``width``
        in px, ``overflows``: wider than its container), ``sections`` (id, status),
        ``banner``, ``bodyText`` (characters), ``viewportWidth`` and ``pageWidth`` (px; a
        page wider than the window scrolls sideways).

    Raises
    ------
    BrowserError
        No Chromium found (install with ``apt-get install -y chromium``), or it failed.
    """
    exe = _executable(chromium)
    src = Path(html_path).absolute()
    text = src.read_text(encoding="utf-8")
    idx = text.rfind("</body>")
    probe = text[:idx] + _CHECK_SCRIPT + text[idx:] if idx >= 0 else text + _CHECK_SCRIPT
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
        f"--window-size={window[0]},{window[1]}",
    ]
    with tempfile.TemporaryDirectory(prefix="hatrade-browser-") as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(probe, encoding="utf-8")
        env = dict(os.environ, HOME=tmp)
        cmd = [exe, *flags, f"--user-data-dir={tmp}/profile", "--dump-dom", page.as_uri()]
        res = _run(cmd, timeout, env, f"Chromium ({exe}) failed")
        m = re.search(r'<pre id="__hatrade_check__">(.*?)</pre>', res.stdout, re.S)
        if not m:
            raise BrowserError(
                f"Chromium ({exe}) did not render the page (exit {res.returncode}): "
                f"{res.stderr.strip()[-800:]}"
            )
        info = json.loads(html.unescape(m.group(1)))
        if screenshot is not None:
            shot = Path(screenshot).absolute()
            shot.parent.mkdir(parents=True, exist_ok=True)
            cmd = [
                exe,
                *flags,
                f"--user-data-dir={tmp}/profile2",
                f"--screenshot={shot}",
                src.as_uri(),
            ]
            res = _run(cmd, timeout, env, "Chromium screenshot failed")
            if not shot.is_file():
                raise BrowserError(
                    f"Chromium wrote no screenshot (exit {res.returncode}): "
                    f"{res.stderr.strip()[-800:]}"
                )
            info["screenshot"] = str(shot)
    return info
