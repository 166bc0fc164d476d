"""Writing a calibration vector in the published layout (the inverse of
:func:`hatrade.data.read_parameter_file`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hatrade.data import N_PARAMETERS, ParameterFileError
from hatrade.io.atomic import write_text

__all__ = ["write_parameter_file"]

logger = logging.getLogger(__name__)


def write_parameter_file(path, params) -> None:
    """Write a calibration vector in the published layout, atomically.

    The file is a header line ``guess`` and one number per line. Floats are written with
    ``repr`` (shortest round-trip form), so ``read_parameter_file(path)`` returns exactly
    ``params``; readers never see a partial file (:func:`hatrade.io.atomic.write_text`).

    Parameters
    ----------
    path : path-like
        Destination.
    params : array_like
        46 finite numbers.

    Raises
    ------
    ParameterFileError
        If ``params`` does not hold 46 finite numbers.
    """
    path = Path(path)
    vec = np.asarray(params, dtype=float).ravel()
    if vec.size != N_PARAMETERS:
        raise ParameterFileError(
            f"cannot write {path}: got {vec.size} parameters, expected {N_PARAMETERS}."
        )
    if not np.isfinite(vec).all():
        raise ParameterFileError(
            f"cannot write {path}: non-finite parameter(s) at position(s) "
            f"{(np.flatnonzero(~np.isfinite(vec)) + 1).tolist()} (1-based)."
        )
    write_text(path, "guess\n" + "".join(f"{float(x)!r}\n" for x in vec))
    logger.debug("wrote %d parameters to %s", vec.size, path)
