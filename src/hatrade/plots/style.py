"""What every hatrade figure shares: a new figure and the PNG writer.

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas, without ``pyplot``:
nothing global (the backend, rcParams, the list of open figures) is touched, so the figure
functions are safe to call from scripts, notebooks and tests. :func:`save_figure` writes a
PNG atomically (a temporary file in the target folder, then ``os.replace``) with the
permissions of an ordinary new file (``0o666 & ~umask``, as every file hatrade writes;
:mod:`hatrade.io.atomic` is a layer above and does the same for data files).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["new_figure", "save_figure", "png_metadata"]

log = logging.getLogger(__name__)


def new_figure(figsize=(6.5, 5.0)):
    """A :class:`matplotlib.figure.Figure` of ``figsize`` inches (150 dpi, constrained
    layout) attached to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_metadata() -> dict:
    """PNG text chunks of every hatrade figure: ``Software`` names the hatrade version."""
    import matplotlib

    from hatrade import __version__

    return {"Software": f"hatrade {__version__} (matplotlib {matplotlib.__version__})"}


def _file_mode() -> int:
    """``0o666 & ~umask``: the permissions of an ordinary new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_figure(fig, path) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (temporary file, fsync, then
    ``os.replace``), readable as any new file (``0o666 & ~umask``; the temporary file
    starts private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", metadata=png_metadata())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    log.debug("wrote %s", path)
    return path
