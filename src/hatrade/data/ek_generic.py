r"""The Eaton-Kortum data in the generic tidy format (:mod:`hatrade.data.tidy`).

The author's files hold :math:`y_{ij} = \log(X_{ij}/X_{ii})` only, so the tidy table
carries trade *relative to the importer's domestic sales*: :math:`X_{ii} = 1` and
:math:`X_{ij} = e^{y_{ij}}`. The gravity regression and the calibration use these
normalized shares only, so they are the same as with levels (an imbalance check on them is
meaningless). The covariates are the paper's (``distance_miles``, the six bins, ``border``,
``language``, ``ec``, ``efta``; zero on the domestic rows); the country table has the
labor forces of :func:`hatrade.data.load_labor`. ``ek-tidy-trade.csv`` and
``ek-tidy-countries.csv`` ship the same tables as files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.data import COUNTRIES, COVARIATES, load_labor, load_trade_data
from hatrade.data.tidy import TradeData, read_trade_data

__all__ = ["EK_TRADE_FILE", "EK_COUNTRY_FILE", "ek_tables", "ek_trade_data", "ek_files"]

#: The shipped tidy files (in hatrade/data).
EK_TRADE_FILE = "ek-tidy-trade.csv"
EK_COUNTRY_FILE = "ek-tidy-countries.csv"


def ek_tables(correct_germany: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trade table, country table) of the Eaton-Kortum data in the tidy format."""
    off = load_trade_data()
    dom = pd.DataFrame({"importer": list(COUNTRIES), "exporter": list(COUNTRIES)})
    dom["log_trade"] = 0.0
    dom["distance_miles"] = 0.0
    for c in COVARIATES:
        dom[c] = 0
    t = pd.concat([off, dom], ignore_index=True)
    t["trade"] = np.exp(t.pop("log_trade"))
    pos = {c: k for k, c in enumerate(COUNTRIES)}
    t = t.assign(_i=t["importer"].map(pos), _j=t["exporter"].map(pos))
    t = t.sort_values(["_i", "_j"]).drop(columns=["_i", "_j"]).reset_index(drop=True)
    t = t[["exporter", "importer", "trade", "distance_miles", *COVARIATES]]
    labor = load_labor(correct_germany)
    countries = pd.DataFrame({"country": labor.index, "labor": labor.to_numpy()})
    return t, countries


def ek_files() -> tuple:
    """Paths of the shipped tidy files (trade, countries)."""
    root = resources.files("hatrade.data")
    return Path(str(root / EK_TRADE_FILE)), Path(str(root / EK_COUNTRY_FILE))


def ek_trade_data(correct_germany: bool = False) -> TradeData:
    """The Eaton-Kortum data as a :class:`~hatrade.data.tidy.TradeData`."""
    t, c = ek_tables(correct_germany)
    return read_trade_data(t, c)
