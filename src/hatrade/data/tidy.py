r"""Any bilateral trade data set as a tidy table (docs/own-data.md).

A *trade table* has one row per ordered pair (exporter, importer), domestic sales included
(exporter = importer), a trade value, and any pair covariates (continuous or 0/1). A
*country table* has one row per country with its labor force (or population), and optionally
output and expenditure. Both can be CSV or Parquet files or pandas DataFrames; the column
names are options (:class:`TradeColumns`, :class:`CountryColumns`) with the defaults of the
data set shipped with the package (``trade-30-countries-2006.csv``).

:func:`read_trade_data` reads and standardizes them into a :class:`TradeData`;
:func:`check_trade_data` lists every problem, each named with its rows (a
:class:`Problem`); :func:`validated` raises :class:`DataCheckError` when any problem is an
error. Country ``i`` is the importer, ``j`` the exporter: :math:`X_{ij}` is ``i``'s spending
on goods from ``j`` (importer rows, as everywhere in hatrade).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from hatrade.data import DataFileError

__all__ = [
    "TradeColumns",
    "CountryColumns",
    "TradeData",
    "Problem",
    "DataReport",
    "DataCheckError",
    "read_table",
    "read_trade_data",
    "check_trade_data",
    "validated",
]

log = logging.getLogger(__name__)

Source = Union[str, os.PathLike, pd.DataFrame]

#: Relative gap between a country's sales and its spending above which it is reported.
_IMBALANCE_RTOL = 1e-6
_MAX_LISTED = 10


class DataCheckError(DataFileError):
    """A trade data set has problems that rule out its use; the message lists them."""


@dataclass(frozen=True)
class TradeColumns:
    """Column names of a trade table.

    ``exporter``, ``importer`` and ``value`` are required; ``output`` (the exporter's output,
    constant within an exporter), ``expenditure`` (the importer's) and ``year`` are used when
    present. Every other column is a pair covariate.
    """

    exporter: str = "exporter"
    importer: str = "importer"
    value: str = "trade"
    output: str = "Y"
    expenditure: str = "E"
    year: str = "year"


@dataclass(frozen=True)
class CountryColumns:
    """Column names of a country table: ``country`` and ``labor`` (or ``population``)
    required, ``output`` and ``expenditure`` optional."""

    country: str = "country"
    labor: str = "labor"
    population: str = "population"
    output: str = "output"
    expenditure: str = "expenditure"


@dataclass(frozen=True)
class Problem:
    """One problem of a data set: ``kind`` (e.g. ``missing_pair``), ``severity``
    (``error`` rules the data out, ``warning`` is reported), a one-line ``message`` and the
    ``rows`` concerned (``EXP->IMP`` pairs or country codes)."""

    kind: str
    severity: str
    message: str
    rows: tuple = ()

    def text(self) -> str:
        shown = ", ".join(str(r) for r in self.rows[:_MAX_LISTED])
        more = len(self.rows) - _MAX_LISTED
        rows = f" [{shown}{f' and {more} more' if more > 0 else ''}]" if self.rows else ""
        return f"{self.severity}: {self.kind}: {self.message}{rows}"


@dataclass(frozen=True, eq=False)
class TradeData:
    """A standardized trade data set.

    Attributes
    ----------
    trade : pandas.DataFrame
        Columns ``exporter``, ``importer``, ``trade`` and the covariates (original names).
    countries : pandas.DataFrame
        Indexed by country code (the model's country order): ``labor``, ``output``,
        ``expenditure`` (NaN when unknown).
    covariates : tuple of str
        The pair covariate columns.
    labor_source : str
        Where ``labor`` comes from (``labor``, ``population`` or ``output`` of a table).
    source : str
        The file (or ``DataFrame``) read.
    """

    trade: pd.DataFrame
    countries: pd.DataFrame
    covariates: tuple
    labor_source: str
    source: str = ""
    problems: tuple = field(default=())

    @property
    def codes(self) -> tuple:
        return tuple(self.countries.index)

    @property
    def M(self) -> int:
        return len(self.countries)

    def matrix(self) -> np.ndarray:
        """Trade values as an (M, M) matrix, importer rows, NaN where absent."""
        pos = {c: k for k, c in enumerate(self.codes)}
        t = self.trade[self.trade["exporter"].isin(pos) & self.trade["importer"].isin(pos)]
        t = t.drop_duplicates(["exporter", "importer"])
        X = np.full((self.M, self.M), np.nan)
        X[t["importer"].map(pos).to_numpy(int), t["exporter"].map(pos).to_numpy(int)] = t["trade"]
        return X


def read_table(source: Source, what: str = "trade") -> pd.DataFrame:
    """A DataFrame from a CSV or Parquet file (by suffix) or a DataFrame (copied).

    Raises
    ------
    DataFileError
        A missing or unreadable file, or an unknown suffix.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if not path.is_file():
        raise DataFileError(f"{what} table {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataFileError(
            f"{what} table {path}: suffix {suffix!r} is not allowed; use .csv, .parquet or .pq."
        )
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types
        raise DataFileError(f"could not read {what} table {path}: {exc}") from exc


def _select_year(df: pd.DataFrame, col: str | None, year) -> pd.DataFrame:
    if not col or col not in df.columns:
        if year is not None:
            raise DataFileError(
                f"year {year!r} is given but the trade table has no column {col!r}."
            )
        return df
    years = sorted(df[col].dropna().astype(str).unique())
    if year is None:
        if len(years) > 1:
            raise DataFileError(
                f"the trade table has several years ({', '.join(years)}): choose one (year=...)."
            )
        return df
    if str(year) not in years:
        raise DataFileError(f"year {year!r} is not in the trade table; it has {', '.join(years)}.")
    return df[df[col].astype(str) == str(year)]


def _country_side(df: pd.DataFrame, code: str, col: str) -> pd.Series:
    """A country-level column of the trade table (first value per country)."""
    return df.groupby(code, sort=False)[col].first()


def _country_table(table, tc: TradeColumns, cc: CountryColumns, raw: pd.DataFrame):
    """(countries DataFrame indexed by code, labor source). Codes: the country table's order,
    else sorted codes of the trade table."""
    if table is not None:
        ct = read_table(table, "country")
        if cc.country not in ct.columns:
            raise DataFileError(
                f"country table lacks column {cc.country!r}; found {list(ct.columns)}."
            )
        for name in (cc.labor, cc.population):
            if name in ct.columns:
                labor, source = ct[name], f"country table column {name!r}"
                break
        else:
            raise DataFileError(
                f"country table needs a column {cc.labor!r} or {cc.population!r}; "
                f"found {list(ct.columns)}."
            )
        out = pd.DataFrame(
            {
                "labor": pd.to_numeric(labor, errors="coerce").to_numpy(float),
                "output": _optional(ct, cc.output),
                "expenditure": _optional(ct, cc.expenditure),
            },
            index=pd.Index(ct[cc.country].astype(str), name="country"),
        )
        return out, source
    codes = sorted(set(raw[tc.exporter].astype(str)) | set(raw[tc.importer].astype(str)))
    out = pd.DataFrame(index=pd.Index(codes, name="country"))
    y = _country_side(raw, tc.exporter, tc.output) if tc.output in raw else None
    e = _country_side(raw, tc.importer, tc.expenditure) if tc.expenditure in raw else None
    out["output"] = y.reindex(codes).astype(float) if y is not None else np.nan
    out["expenditure"] = e.reindex(codes).astype(float) if e is not None else np.nan
    out["labor"] = out["output"] / out["output"].mean()
    source = f"trade table column {tc.output!r} (labor proportional to output)"
    return out[["labor", "output", "expenditure"]], source


def _optional(ct: pd.DataFrame, name: str) -> np.ndarray:
    if name in ct.columns:
        return pd.to_numeric(ct[name], errors="coerce").to_numpy(float)
    return np.full(len(ct), np.nan)


def read_trade_data(
    trade: Source,
    countries: Source | None = None,
    *,
    columns: TradeColumns | None = None,
    country_columns: CountryColumns | None = None,
    year=None,
) -> TradeData:
    """Read a trade table (and a country table) into a :class:`TradeData`.

    Parameters
    ----------
    trade : path or DataFrame
        The trade table (:class:`TradeColumns`).
    countries : path or DataFrame, optional
        The country table (:class:`CountryColumns`). Without it, the countries are the
        sorted codes of the trade table and labor is taken proportional to the exporter's
        output column (equal wages; a warning of :func:`check_trade_data`).
    columns, country_columns : column names (defaults as in the shipped data).
    year : optional
        The year to use when the table has several.

    Raises
    ------
    DataFileError
        Unreadable files, missing required columns, several years without ``year``.
        Problems of the contents are left to :func:`check_trade_data`.
    """
    tc, cc = columns or TradeColumns(), country_columns or CountryColumns()
    raw = read_table(trade, "trade")
    missing = [c for c in (tc.exporter, tc.importer, tc.value) if c not in raw.columns]
    if missing:
        raise DataFileError(
            f"trade table lacks column(s) {missing} (exporter, importer, value); found "
            f"{list(raw.columns)}. Name the columns with the column options."
        )
    raw = _select_year(raw, tc.year, year)
    ctab, source = _country_table(countries, tc, cc, raw)
    special = {tc.exporter, tc.importer, tc.value, tc.output, tc.expenditure, tc.year}
    covs = tuple(c for c in raw.columns if c not in special)
    out = pd.DataFrame(
        {
            "exporter": raw[tc.exporter].astype(str).to_numpy(),
            "importer": raw[tc.importer].astype(str).to_numpy(),
            "trade": pd.to_numeric(raw[tc.value], errors="coerce").to_numpy(float),
        }
    )
    for c in covs:
        out[c] = raw[c].to_numpy()
    name = str(trade) if not isinstance(trade, pd.DataFrame) else "DataFrame"
    return TradeData(out, ctab, covs, source, name)


# ----------------------------------------------------------------------------- checks


def _pair(e, i) -> str:
    return f"{e}->{i}"


def _check_codes(data: TradeData) -> list[Problem]:
    t, codes = data.trade, set(data.codes)
    out = []
    dup_c = data.countries.index[data.countries.index.duplicated()].unique().tolist()
    if dup_c:
        out.append(
            Problem("duplicate_country", "error", "the country table lists twice", tuple(dup_c))
        )
    used = set(t["exporter"]) | set(t["importer"])
    unknown = sorted(used - codes)
    if unknown:
        out.append(
            Problem(
                "unknown_code",
                "error",
                "countries in the trade table but not in the country table",
                tuple(unknown),
            )
        )
    absent = sorted(codes - used)
    if absent:
        out.append(Problem("no_trade", "error", "countries without any trade rows", tuple(absent)))
    lab = data.countries["labor"]
    bad = lab.index[~(np.isfinite(lab.to_numpy(float)) & (lab.to_numpy(float) > 0))].tolist()
    if bad:
        out.append(
            Problem(
                "labor", "error", f"labor missing or not positive ({data.labor_source})", tuple(bad)
            )
        )
    if "output" in data.labor_source:
        out.append(
            Problem(
                "labor_from_output",
                "warning",
                "no country table: labor forces are taken proportional to output (equal wages)",
            )
        )
    return out


def _check_pairs(data: TradeData) -> list[Problem]:
    t, codes = data.trade, data.codes
    out = []
    dup = t[t.duplicated(["exporter", "importer"], keep=False)]
    if len(dup):
        rows = sorted({_pair(e, i) for e, i in zip(dup["exporter"], dup["importer"])})
        out.append(Problem("duplicate_pair", "error", "pairs listed more than once", tuple(rows)))
    present = set(zip(t["exporter"], t["importer"]))
    absent = [_pair(e, i) for i in codes for e in codes if e != i and (e, i) not in present]
    if absent:
        out.append(
            Problem(
                "missing_pair",
                "error",
                f"non-square coverage: {len(absent)} of {len(codes) * (len(codes) - 1)} "
                "international pairs are absent",
                tuple(absent),
            )
        )
    nodom = [_pair(c, c) for c in codes if (c, c) not in present]
    if nodom:
        out.append(
            Problem(
                "missing_domestic",
                "error",
                "domestic sales (exporter = importer) are missing",
                tuple(nodom),
            )
        )
    return out


def _check_values(data: TradeData) -> list[Problem]:
    t = data.trade
    v = t["trade"].to_numpy(float)
    dom = (t["exporter"] == t["importer"]).to_numpy()
    rows = [_pair(e, i) for e, i in zip(t["exporter"], t["importer"])]
    out = []

    def add(mask, kind, severity, message):
        if mask.any():
            out.append(Problem(kind, severity, message, tuple(np.asarray(rows)[mask].tolist())))

    add(~np.isfinite(v), "missing_value", "error", "trade value missing or not a number")
    add(np.isfinite(v) & (v < 0), "negative", "error", "negative trade values")
    add((v == 0) & dom, "zero_domestic", "error", "zero domestic sales (shares need X_ii > 0)")
    add(
        (v == 0) & ~dom,
        "zero",
        "warning",
        "zero trade flows: the OLS estimator (logs) cannot use them; PPML keeps them",
    )
    for c in data.covariates:
        x = pd.to_numeric(t[c], errors="coerce").to_numpy(float)
        add(
            ~np.isfinite(x) & ~dom,
            "missing_covariate",
            "error",
            f"covariate {c!r} missing or not a number",
        )
    return out


def _check_balance(data: TradeData) -> list[Problem]:
    X = data.matrix()
    if not np.isfinite(X).all():
        return []
    sales, spending = X.sum(axis=0), X.sum(axis=1)
    gap = (sales - spending) / np.maximum(spending, 1e-300)
    bad = np.abs(gap) > _IMBALANCE_RTOL
    if not bad.any():
        return []
    rows = tuple(f"{c} ({g:+.2%})" for c, g, b in zip(data.codes, gap, bad) if b)
    return [
        Problem(
            "imbalance",
            "warning",
            "sales differ from spending (trade is not balanced; the calibration uses "
            "normalized shares only)",
            rows,
        )
    ]


@dataclass(frozen=True, eq=False)
class DataReport:
    """The problems of a data set and a short summary (:func:`check_trade_data`)."""

    problems: tuple
    summary: dict

    @property
    def errors(self) -> tuple:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        return "\n".join(p.text() for p in self.problems)


def _summary(data: TradeData) -> dict:
    t = data.trade
    v = t["trade"].to_numpy(float)
    dom = (t["exporter"] == t["importer"]).to_numpy()
    covs = {}
    for c in data.covariates:
        x = pd.to_numeric(t.loc[~dom, c], errors="coerce")
        covs[c] = {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max())}
    total = float(np.nansum(v))
    return {
        "source": data.source,
        "countries": data.M,
        "rows": len(t),
        "total_trade": total,
        "domestic_share": float(np.nansum(v[dom]) / total) if total > 0 else float("nan"),
        "zero_flows": int((v == 0).sum()),
        "labor_source": data.labor_source,
        "covariates": covs,
    }


def check_trade_data(data: TradeData) -> DataReport:
    """Every problem of a data set (:class:`Problem`, with its rows) and a summary.

    Errors: unknown codes (in the trade table but not in the country table), countries
    without trade, bad labor, duplicate pairs, missing international pairs (non-square
    coverage), missing domestic sales, missing or negative values, zero domestic sales,
    missing covariates. Warnings: zero international flows, imbalances, labor taken from
    output.
    """
    problems = _check_codes(data) + _check_pairs(data) + _check_values(data)
    if not any(p.severity == "error" for p in problems):
        problems += _check_balance(data)
    return DataReport(tuple(problems), _summary(data))


def validated(data: TradeData) -> TradeData:
    """``data`` when it has no errors, else :class:`DataCheckError` listing them."""
    report = check_trade_data(data)
    for p in report.problems:
        if p.severity == "warning":
            log.warning("%s", p.text())
    if not report.ok:
        raise DataCheckError(
            f"trade data {data.source} cannot be used: "
            + "; ".join(p.text() for p in report.errors)
        )
    return data
