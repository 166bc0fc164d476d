r"""Micro trade elasticities at every household state, their expenditure weights and the
country aggregates they add up to (Proposition 1, docs/model.md 5).

Given one country's converged household problem and the tangents of its policies to the
price of each partner variety (:mod:`hatrade.analysis.tangents`), :func:`aggregate_pieces`
forms the micro elasticities :math:`\theta^\pi_{ij}(a,z)`, :math:`\theta^c_{ij}(a,z)` (and
the same for the home variety), the expenditure weights :math:`\omega_{ij}(a,z)` and the two
margins of the country elasticity, plus the same elasticity straight from aggregate
spending (a check) and, optionally, the long-run one. :func:`micro_dataset` labels the micro
arrays as an :class:`xarray.Dataset`. The formulas are in the docstring of
:mod:`hatrade.analysis.elasticity`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import stationary_distribution

__all__ = ["aggregate_pieces", "micro_dataset"]


@partial(jax.jit, static_argnames=("longrun",))
def aggregate_pieces(prm, lam, partners, home, primal, tang, *, longrun=False):
    """Micro elasticities, weights and aggregates for a batch of partners (jitted)."""
    M = prm.p.shape[0]
    dps = jax.vmap(lambda j: jnp.zeros(M, prm.p.dtype).at[j].set(prm.p[j]))(partners)
    c, a_p, pi = primal
    dc, da, dpi = tang
    spend = pi * c * prm.p  # (Na, Nz, M)
    P = partners.shape[0]
    ar = jnp.arange(P)
    c_j = jnp.moveaxis(c[..., partners], -1, 0)  # (P, Na, Nz)
    pi_j = jnp.moveaxis(pi[..., partners], -1, 0)
    th_c = dc[ar, :, :, partners] / c_j
    th_pi = dpi[ar, :, :, partners] / pi_j
    th_c_h = dc[..., home] / c[None, ..., home]
    th_pi_h = dpi[..., home] / pi[None, ..., home]
    s_j = lam[None] * jnp.moveaxis(spend[..., partners], -1, 0)
    s_h = lam * spend[..., home]
    w_j = s_j / jnp.sum(s_j, axis=(1, 2), keepdims=True)
    w_h = s_h / jnp.sum(s_h)
    ext = jnp.sum(w_j * th_pi, axis=(1, 2)) - jnp.sum(w_h[None] * th_pi_h, axis=(1, 2))
    inten = 1.0 + jnp.sum(w_j * th_c, axis=(1, 2)) - jnp.sum(w_h[None] * th_c_h, axis=(1, 2))
    out = dict(
        c=c,
        a_p=a_p,
        pi=pi,
        spend=spend,
        th_c=th_c,
        th_pi=th_pi,
        th_c_home=th_c_h,
        th_pi_home=th_pi_h,
        w_partner=w_j,
        w_home=w_h,
        theta_ext=ext,
        theta_int=inten,
    )
    # the same elasticity directly from aggregate spending (lambda fixed): a check
    dspend = (dpi * c[None] + pi[None] * dc) * prm.p + pi[None] * c[None] * dps[:, None, None, :]
    dM = jnp.einsum("az,kazj->kj", lam, dspend)
    Mv = jnp.einsum("az,azj->j", lam, spend)
    out["theta_aggregate"] = dM[ar, partners] / Mv[partners] - dM[:, home] / Mv[home]
    if longrun:
        zg, zP = jnp.zeros_like(prm.a_grid), jnp.zeros_like(prm.Pz)
        dlam = jax.vmap(
            lambda d_a, d_pi: jax.jvp(
                stationary_distribution, (a_p, pi, prm.a_grid, prm.Pz), (d_a, d_pi, zg, zP)
            )[1]
        )(da, dpi)
        dM_lr = dM + jnp.einsum("kaz,azj->kj", dlam, spend)
        out["theta_longrun"] = dM_lr[ar, partners] / Mv[partners] - dM_lr[:, home] / Mv[home]
    return out


def micro_dataset(eq, cp, partners, out):
    """The micro arrays of ``out`` (from :func:`aggregate_pieces`) for country problem ``cp``
    (:class:`hatrade.analysis.elasticity.CountryProblem`) as a labeled dataset (dims partner,
    a_index, z_index; see :class:`hatrade.analysis.elasticity_results.ElasticityResult`)."""
    import xarray as xr

    codes = list(eq.countries)
    pc = [codes[j] for j in partners]
    Na, Nz = cp.lam.shape
    th_pi, th_c = np.asarray(out["th_pi"]), np.asarray(out["th_c"])
    th_pi_h, th_c_h = np.asarray(out["th_pi_home"]), np.asarray(out["th_c_home"])
    el = 1.0 + (th_pi - th_pi_h) + (th_c - th_c_h)
    spend = np.asarray(out["spend"])
    imp = np.moveaxis(spend[..., partners], -1, 0)  # (P, Na, Nz)
    omega = imp / imp.sum(axis=0, keepdims=True)
    hh_el = np.sum(omega * el, axis=0)
    tot = spend.sum(axis=-1)
    home_spend = spend[..., cp.index]
    all_imports = tot - home_spend
    dims3 = ("partner", "a_index", "z_index")
    dims2 = ("a_index", "z_index")
    ds = xr.Dataset(
        {
            "th_pi": (dims3, th_pi),
            "th_c": (dims3, th_c),
            "th_pi_home": (dims3, th_pi_h),
            "th_c_home": (dims3, th_c_h),
            "elasticity": (dims3, el),
            "elasticity_extensive": (dims3, th_pi - th_pi_h),
            "elasticity_intensive": (dims3, 1.0 + th_c - th_c_h),
            "weight_partner": (dims3, np.asarray(out["w_partner"])),
            "weight_home": (dims2, np.asarray(out["w_home"])),
            "household_elasticity": (dims2, hh_el),
            "import_share": (dims2, all_imports / tot),
            "expenditure": (dims2, tot),
            "distribution": (dims2, cp.lam),
            "assets": (("a_index",), np.asarray(cp.prm.a_grid)),
            "z": (("z_index",), np.asarray(cp.prm.z)),
        },
        coords={"partner": pc, "a_index": np.arange(1, Na + 1), "z_index": np.arange(1, Nz + 1)},
    )
    desc = {
        "th_pi": "d log pi_j(a,z) / d log p_ij (extensive margin, partner variety)",
        "th_c": "d log c_j(a,z) / d log p_ij (intensive margin, partner variety)",
        "th_pi_home": "d log pi_i(a,z) / d log p_ij (home variety)",
        "th_c_home": "d log c_i(a,z) / d log p_ij (home variety)",
        "elasticity": "household elasticity 1 + (th_pi - th_pi_home) + (th_c - th_c_home)",
        "weight_partner": "expenditure weight lambda pi_j p_ij c_j / sum over states",
        "weight_home": "expenditure weight lambda pi_i p_ii c_i / sum over states",
        "household_elasticity": "partner elasticities averaged with the household's "
        "import-spending weights",
        "import_share": "household import share sum_{j!=i} pi_j p_ij c_j / sum_j pi_j p_ij c_j",
        "expenditure": "household expenditure sum_j pi_j p_ij c_j",
    }
    for k, v in desc.items():
        ds[k].attrs["description"] = v
    ds.attrs.update(
        {"country": cp.code, "kind": "impact elasticities (w, R and the distribution fixed)"}
    )
    return ds
