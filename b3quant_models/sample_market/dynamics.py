"""Market dynamics of the sample market: state transition, SSVI surface, BSM prices, CDI path and
the optimal next-day IV forecast.

One function, ``advance``, moves the state (spot, Heston variance, skew factor) from close t to
close t+1 given the day's return and shocks. The simulator feeds it random draws and the forecaster
feeds it Gauss–Hermite nodes, so the stored ``iv_next_optimal`` is the conditional expectation of
exactly the dynamics that produced the data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import ndtr

from ..calendar import DAYS_PER_YEAR, next_session, sessions
from .config import UnderlyingSpec

ArrayLike = npt.ArrayLike
DT = 1.0 / DAYS_PER_YEAR
V_MIN = 0.08**2  # variance floor (full truncation keeps the Euler step well defined)
TICK = 0.01
ATM_1M, ATM_3M = 21 / DAYS_PER_YEAR, 63 / DAYS_PER_YEAR
# Gauss–Hermite nodes: (return, variance shock, skew shock) without and with a jump.
QUAD_NODES = (9, 5, 5)
QUAD_NODES_JUMP = (5, 3, 3)


@dataclass(frozen=True)
class DynParams:
    """Per-underlying parameters as arrays (shape (n,)), so every step is vectorized."""

    vbar: np.ndarray
    kappa: np.ndarray
    xi: np.ndarray
    rho_sv: np.ndarray
    jump_p: np.ndarray  # probability of one jump per session (lambda * dt)
    jump_mean: np.ndarray
    jump_std: np.ndarray
    z_bar: np.ndarray
    phi_z: np.ndarray
    beta_z: np.ndarray
    s_z: np.ndarray
    vrp: np.ndarray
    eta_frac: np.ndarray
    gamma: np.ndarray
    erp: float

    @classmethod
    def from_specs(cls, specs: tuple[UnderlyingSpec, ...], equity_premium: float) -> DynParams:
        def a(name: str) -> np.ndarray:
            return np.array([getattr(s, name) for s in specs], dtype=float)

        return cls(
            vbar=a("vol_long") ** 2,
            kappa=a("kappa"),
            xi=a("vol_of_var"),
            rho_sv=a("rho_sv"),
            jump_p=a("jump_intensity") * DT,
            jump_mean=a("jump_mean"),
            jump_std=a("jump_std"),
            z_bar=np.arctanh(a("rho_skew")),
            phi_z=a("skew_persistence"),
            beta_z=a("skew_leverage"),
            s_z=a("skew_noise"),
            vrp=a("vrp"),
            eta_frac=a("eta_frac"),
            gamma=a("ssvi_gamma"),
            erp=float(equity_premium),
        )

    def take(self, idx: np.ndarray) -> DynParams:
        """Parameters gathered per row (e.g. per option) for broadcasting."""
        kw = {k: (v if k == "erp" else v[idx]) for k, v in self.__dict__.items()}
        return DynParams(**kw)

    def col(self) -> DynParams:
        """Parameters as column vectors (n, 1), to broadcast against node axes."""
        kw = {k: (v if k == "erp" else v[:, None]) for k, v in self.__dict__.items()}
        return DynParams(**kw)


# --- surface -------------------------------------------------------------------------------------


def atm_total_variance(tau: ArrayLike, v: ArrayLike, p: DynParams) -> np.ndarray:
    """theta(tau) = vrp * E[int_0^tau v_s ds] under the Heston mean: increasing in tau (no calendar
    arbitrage) and ``vrp * v`` per unit time at the short end, so the ATM level co-moves with v."""
    kt = p.kappa * tau
    # (1 - e^{-kt}) / kappa, written with expm1 for precision at small tau
    decay = -np.expm1(-kt) / p.kappa
    return p.vrp * (p.vbar * tau + (v - p.vbar) * decay)


def ssvi_rho_eta(z: ArrayLike, p: DynParams) -> tuple[np.ndarray, np.ndarray]:
    """SSVI rho = tanh(z) and eta at ``eta_frac`` of the Gatheral–Jacquier bound 2/(1+|rho|)."""
    rho = np.tanh(z)
    return rho, p.eta_frac * 2.0 / (1.0 + np.abs(rho))


def ssvi_phi(theta: ArrayLike, eta: ArrayLike, gamma: ArrayLike) -> np.ndarray:
    """Power-law phi(theta) = eta theta^-gamma (1+theta)^(gamma-1); with gamma <= 1/2 and
    eta (1+|rho|) <= 2 the surface is free of static arbitrage (Gatheral & Jacquier 2014)."""
    return eta * theta ** (-gamma) * (1.0 + theta) ** (gamma - 1.0)


def ssvi_total_variance(k: ArrayLike, theta: ArrayLike, rho: ArrayLike, phi: ArrayLike) -> np.ndarray:
    pk = phi * k
    return 0.5 * theta * (1.0 + rho * pk + np.sqrt((pk + rho) ** 2 + 1.0 - rho**2))


def surface_iv(k: ArrayLike, tau: ArrayLike, v: ArrayLike, z: ArrayLike, p: DynParams) -> np.ndarray:
    """True implied vol at log-moneyness k = ln(K/F) and time tau (years) for state (v, z)."""
    theta = atm_total_variance(tau, v, p)
    rho, eta = ssvi_rho_eta(z, p)
    w = ssvi_total_variance(k, theta, rho, ssvi_phi(theta, eta, p.gamma))
    return np.sqrt(w / tau)


def surface_summary(v: np.ndarray, z: np.ndarray, p: DynParams) -> dict[str, np.ndarray]:
    """Readable surface features: ATM vols at 1m/3m, 1m skew dsigma/dk at k=0, term slope."""
    out: dict[str, np.ndarray] = {}
    rho, eta = ssvi_rho_eta(z, p)
    for name, tau in (("1m", ATM_1M), ("3m", ATM_3M)):
        theta = atm_total_variance(tau, v, p)
        out[f"atm_vol_{name}"] = np.sqrt(theta / tau)
        if name == "1m":
            # dw/dk at k=0 is theta*rho*phi, so dsigma/dk = rho*phi*sqrt(theta)/(2 sqrt(tau))
            out["skew_1m"] = rho * ssvi_phi(theta, eta, p.gamma) * np.sqrt(theta) / (2 * np.sqrt(tau))
    out["term_slope"] = out["atm_vol_3m"] - out["atm_vol_1m"]
    out["rho"], out["eta"] = rho, eta
    return out


# --- prices --------------------------------------------------------------------------------------


def bs_price(
    spot: ArrayLike, strike: ArrayLike, tau: ArrayLike, r: ArrayLike, sigma: ArrayLike, is_call: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Black–Scholes–Merton price with q = 0 (private: keeps the simulator free of other modules)."""
    sd = sigma * np.sqrt(tau)
    fwd = spot * np.exp(r * tau)
    d1 = (np.log(fwd / strike) + 0.5 * sd**2) / sd
    d2 = d1 - sd
    df = np.exp(-r * tau)
    call = df * (fwd * ndtr(d1) - strike * ndtr(d2))
    put = df * (strike * ndtr(-d2) - fwd * ndtr(-d1))
    return np.where(is_call, call, put), ndtr(d1)


def round_tick(x: ArrayLike) -> np.ndarray:
    """Round a price to B3's 0.01 tick, never below one tick."""
    return np.maximum(np.round(np.asarray(x) / TICK), 1.0) * TICK


# --- state transition ----------------------------------------------------------------------------


def daily_drift(v: ArrayLike, r: ArrayLike, p: DynParams) -> np.ndarray:
    """Mean log return before shocks: (r + erp - v/2) dt minus the jump compensator."""
    kappa_j = np.exp(p.jump_mean + 0.5 * p.jump_std**2) - 1.0
    return (r + p.erp - 0.5 * v) * DT - p.jump_p * kappa_j


def advance(
    spot: ArrayLike, v: ArrayLike, z: ArrayLike, ret: ArrayLike, z_v: ArrayLike, eps_z: ArrayLike,
    p: DynParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close t -> close t+1 given the log return ``ret`` (diffusion + jump), the standard normal
    variance shock ``z_v`` (correlated with the diffusive return) and the skew shock ``eps_z``.

    The spot is rounded to the tick, so the spot in the files *is* the model's spot.
    """
    spot1 = round_tick(spot * np.exp(ret))
    v1 = np.maximum(v + p.kappa * (p.vbar - v) * DT + p.xi * np.sqrt(v * DT) * z_v, V_MIN)
    z1 = p.z_bar + p.phi_z * (z - p.z_bar) + p.beta_z * ret + p.s_z * eps_z
    return spot1, v1, z1


def step_from_shocks(
    spot: ArrayLike, v: ArrayLike, z: ArrayLike, r: ArrayLike, zs: ArrayLike, zp: ArrayLike, ez: ArrayLike,
    jump_u: ArrayLike, jump_y: ArrayLike, p: DynParams,
) -> tuple[np.ndarray, ...]:
    """One simulated session from raw draws (standard normals ``zs``, ``zp``, ``ez``, ``jump_y`` and a
    uniform ``jump_u``): returns (spot1, v1, z1, log return, jump size, variance shock)."""
    jump = np.where(jump_u < p.jump_p, p.jump_mean + p.jump_std * jump_y, 0.0)
    ret = daily_drift(v, r, p) + np.sqrt(v * DT) * zs + jump
    z_v = p.rho_sv * zs + np.sqrt(1.0 - p.rho_sv**2) * zp
    spot1, v1, z1 = advance(spot, v, z, ret, z_v, ez, p)
    return spot1, v1, z1, ret, jump, z_v


@dataclass(frozen=True)
class Paths:
    """Simulated daily closes per session (rows) and underlying (columns)."""

    spot: np.ndarray
    var: np.ndarray
    z: np.ndarray
    log_ret: np.ndarray  # return from the previous close (0 on the first session)
    jump: np.ndarray  # jump size in the return (0 when none)
    var_shock: np.ndarray


def simulate_paths(specs: tuple[UnderlyingSpec, ...], p: DynParams, rates: np.ndarray, seed: int) -> Paths:
    """Simulate all underlyings; one random stream per underlying keeps paths stable when the set
    of underlyings changes, and day-major draws keep them stable when ``n_days`` changes.
    ``rates[i]`` is the continuous CDI rate of session i (drift of i->i+1)."""
    n_days, n = len(rates) - 1, len(specs)
    shape = (n_days, n)
    zs, zp, ez, jump_u, jump_y = (np.zeros(shape) for _ in range(5))
    for j in range(n):
        # day-major draws: a shorter market is exactly a prefix of a longer one
        normals = np.random.default_rng(np.random.SeedSequence([seed, 1, j])).standard_normal((n_days, 4))
        zs[:, j], zp[:, j], ez[:, j], jump_y[:, j] = normals.T
        jump_u[:, j] = np.random.default_rng(np.random.SeedSequence([seed, 1, j, 1])).random(n_days)
    spot, var, z, ret, jump, zv_all = (np.zeros(shape) for _ in range(6))
    spot[0] = [s.spot0 for s in specs]
    var[0] = [s.vol0**2 for s in specs]
    z[0] = p.z_bar
    for t in range(1, n_days):
        spot[t], var[t], z[t], ret[t], jump[t], zv_all[t] = step_from_shocks(
            spot[t - 1], var[t - 1], z[t - 1], rates[t - 1], zs[t], zp[t], ez[t], jump_u[t], jump_y[t], p
        )
    return Paths(spot, var, z, ret, jump, zv_all)


# --- forecast ------------------------------------------------------------------------------------


def _gh(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = hermegauss(n)
    return x, w / w.sum()


def next_day_nodes(
    spot: ArrayLike, v: ArrayLike, z: ArrayLike, r: ArrayLike, p: DynParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature nodes of the state at close t+1 given close t, per underlying: (spot, v, z, weight),
    each of shape (n, n_nodes).

    Without a jump (prob. 1-p) the return is N(a, v dt); with one (prob. p) N(a + mu_J, v dt + s_J^2).
    In both branches the variance shock has correlation rho_sv * sqrt(v dt)/sd(return) with the
    return, so two Gauss–Hermite axes (return, orthogonal variance shock) plus one for the skew
    shock integrate the one-day transition exactly up to quadrature error.
    """
    pc = p.col()
    v = np.asarray(v, float)[:, None]
    a = daily_drift(v, np.asarray(r, float)[:, None], pc)
    s0 = np.sqrt(v * DT)
    outs = []
    for jumped, dims in ((False, QUAD_NODES), (True, QUAD_NODES_JUMP)):
        (x1, w1), (x3, w3), (x4, w4) = (_gh(m) for m in dims)
        g1, g3, g4 = (g.ravel()[None, :] for g in np.meshgrid(x1, x3, x4, indexing="ij"))
        wt = np.einsum("i,j,k->ijk", w1, w3, w4).ravel()[None, :]
        if jumped:
            s1 = np.sqrt(s0**2 + pc.jump_std**2)
            c = pc.rho_sv * s0 / s1
            ret = a + pc.jump_mean + s1 * g1
            wt = wt * pc.jump_p
        else:
            c = pc.rho_sv
            ret = a + s0 * g1
            wt = wt * (1.0 - pc.jump_p)
        z_v = c * g1 + np.sqrt(1.0 - c**2) * g3
        s1_, v1_, z1_ = advance(np.asarray(spot, float)[:, None], v, np.asarray(z, float)[:, None],
                                ret, z_v, g4, pc)
        outs.append((s1_, v1_, z1_, np.broadcast_to(wt, s1_.shape)))
    return tuple(np.concatenate([o[i] for o in outs], axis=1) for i in range(4))  # type: ignore[return-value]


def expected_next_iv(
    log_strike: np.ndarray,
    tau_next: np.ndarray,
    r_next: np.ndarray,
    group: np.ndarray,
    group_und: np.ndarray,
    group_tau: np.ndarray,
    nodes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    p: DynParams,
) -> np.ndarray:
    """E[IV_{t+1} | close t] per series: ``group`` maps each row to an (underlying, expiry) group
    whose next-day time is ``group_tau``; the ATM curve and phi are computed once per group/node."""
    spot1, v1, z1, wt = nodes
    pg = p.take(group_und)
    tg = group_tau[:, None]
    theta = atm_total_variance(tg, v1[group_und], p.take(group_und).col())
    rho, eta = ssvi_rho_eta(z1[group_und], pg.col())
    phi = ssvi_phi(theta, eta, pg.gamma[:, None])
    und = group_und[group]
    k = log_strike[:, None] - np.log(spot1[und]) - (r_next * tau_next)[:, None]
    w = ssvi_total_variance(k, theta[group], rho[group], phi[group])
    return (np.sqrt(w / tau_next[:, None]) * wt[und]).sum(axis=1)


# --- CDI ------------------------------------------------------------------------------------------


def cdi_path(start: dt.date, days: list[dt.date], cdi0_pct: float, seed: int) -> np.ndarray:
    """Annual CDI (% on the 252-day basis) per session: piecewise constant, moving only the session
    after a COPOM-like meeting (a Wednesday every six weeks), in 25 bp multiples with momentum and
    mean reversion towards 12.25 %, kept within [10, 15] %. The next session's rate is therefore
    known at today's close, which the forecast uses."""
    g = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    first = start + dt.timedelta(days=14)
    first += dt.timedelta(days=(2 - first.weekday()) % 7)
    meetings = {first + dt.timedelta(days=42 * i) for i in range(len(days) // 20 + 2)}
    selic = cdi0_pct + 0.10
    last_move = 0.0
    out = np.empty(len(days))
    pending = False
    for i, d in enumerate(days):
        if pending:
            move = 0.6 * last_move + 0.15 * (12.25 - selic) + 0.35 * g.standard_normal()
            move = float(np.clip(np.round(move * 4) / 4, -1.0, 1.0))
            selic = float(np.clip(selic + move, 10.10, 15.10))
            last_move, pending = move, False
        out[i] = round(selic - 0.10, 2)
        # a meeting on a non-session moves to the next session
        if any(m <= d and (i == 0 or m > days[i - 1]) for m in meetings):
            pending = True
    return out


def session_days(start: dt.date, n_days: int) -> list[dt.date]:
    """The first ``n_days`` B3 sessions on or after ``start``, plus the following one."""
    days = sessions(start, start + dt.timedelta(days=int(n_days * 1.6) + 30))
    if len(days) < n_days:
        raise ValueError("calendar too short for the requested number of sessions")
    days = days[:n_days]
    return [*days, next_session(days[-1])]
