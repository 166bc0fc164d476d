r"""The results of the Proposition 1 trade elasticities: one country's (impact, and impact
next to long-run) and every pair's.

:func:`hatrade.analysis.elasticity.trade_elasticities`,
:func:`~hatrade.analysis.elasticity.longrun_elasticities` and
:func:`~hatrade.analysis.elasticity.world_elasticities` return them; the definitions are in
the docstring of :mod:`hatrade.analysis.elasticity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["ElasticityResult", "LongRunResult", "WorldElasticities"]


@dataclass
class ElasticityResult:
    """Proposition 1 elasticities of one country (impact: w, R and lambda fixed).

    Attributes
    ----------
    country : str
    table : pandas.DataFrame
        One row per partner: ``partner``, ``theta``, ``theta_extensive``,
        ``theta_intensive`` (theta = extensive + intensive), ``price`` (:math:`p_{ij}`),
        ``trade_share`` (:math:`s_{ij}`), ``weight`` (:math:`s_{ij}/\\sum_{k\\ne i}
        s_{ik}`, the weight in the country elasticity), ``theta_direct`` (the same
        elasticity computed directly from aggregate spending, a check).
    theta, theta_extensive, theta_intensive : float
        Trade-weighted country elasticity and its two margins.
    micro : xarray.Dataset
        Micro arrays with dims (partner, a_index, z_index): ``th_pi``, ``th_c`` (partner
        variety), ``th_pi_home``, ``th_c_home`` (home variety), ``elasticity`` (household
        elasticity for the partner), ``weight_partner``, ``weight_home`` (expenditure
        weights); and with dims (a_index, z_index): ``household_elasticity`` (averaged
        over partners with the household's import-spending weights), ``import_share``,
        ``distribution``; coordinates ``assets``, ``z``.
    method : 'direct' or 'jvp'
    residual : relative residual of the linear solve (method 'direct'; 0 for 'jvp').
    seconds : wall time.
    """

    country: str
    table: pd.DataFrame
    theta: float
    theta_extensive: float
    theta_intensive: float
    micro: object
    method: str
    residual: float = 0.0
    seconds: float = 0.0
    kind: str = "impact"

    def summary(self) -> dict:
        """JSON-ready: country, theta (trade-weighted), its margins, theta by partner."""
        t = self.table
        return {
            "country": self.country,
            "theta": float(self.theta),
            "theta_extensive": float(self.theta_extensive),
            "theta_intensive": float(self.theta_intensive),
            "kind": "impact elasticity (w, R and the stationary distribution fixed)",
            "theta_min": float(t["theta"].min()),
            "theta_max": float(t["theta"].max()),
            "by_partner": {p: float(v) for p, v in zip(t["partner"], t["theta"])},
            "method": self.method,
            "seconds": float(self.seconds),
        }


@dataclass
class LongRunResult:
    """Impact and long-run elasticities of one country side by side.

    ``table`` columns: partner, theta_impact (lambda fixed, Proposition 1), theta_longrun
    (lambda re-solved at the new policies; w and R still fixed), price, trade_share,
    weight. ``theta_impact`` / ``theta_longrun`` are the trade-weighted country numbers.
    """

    country: str
    table: pd.DataFrame
    theta_impact: float
    theta_longrun: float
    impact: ElasticityResult | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {
            "country": self.country,
            "theta_impact": float(self.theta_impact),
            "theta_longrun": float(self.theta_longrun),
            "by_partner_longrun": {
                p: float(v) for p, v in zip(self.table["partner"], self.table["theta_longrun"])
            },
        }


@dataclass
class WorldElasticities:
    """Elasticities of every pair. ``pairs``: importer, exporter, theta, theta_extensive,
    theta_intensive, price, trade_share, weight; ``by_country``: country, theta,
    theta_extensive, theta_intensive, import_share (trade-weighted over partners)."""

    pairs: pd.DataFrame
    by_country: pd.DataFrame
    seconds: float = 0.0
