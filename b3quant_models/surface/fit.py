"""Per-day implied-volatility surfaces: clean quotes, fit SVI per slice, check and repair arbitrage,
optionally replace an underlying's slices by an SSVI surface when that fits better.

Pipeline for one trading day (``fit_surfaces``):

1. drop unusable rows (non-finite, t ≤ 0, iv ≤ 0, weight ≤ 0, |k| > k_max) and keep them with a reason;
2. quasi-explicit raw-SVI fit per (underlying, expiry) with at least ``min_quotes`` quotes;
3. butterfly (g ≥ 0) and calendar (w non-decreasing in t) checks on a fixed k grid → stage "raw_fit";
4. repair, per underlying from the shortest expiry up: a slice that has butterfly arbitrage, or sits
   below the (already final) previous slice anywhere on the grid, is refitted with g ≥ 0 and
   w ≥ w_previous as constraints. The longer expiry is the one moved because B3 liquidity is
   concentrated in the front month, so the shorter smile is the better-determined anchor;
5. SSVI across expiries per underlying (arbitrage-free by construction); it replaces the SVI slices when
   its weighted RMSE is no worse (plus ``ssvi_margin_vol_pts``) or when SVI repair failed and SSVI is clean;
6. checks again → stage "final" (empty when clean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from b3quant_models.surface.arbitrage import DEFAULT_K_GRID, butterfly_violations, calendar_violations
from b3quant_models.surface.ssvi import fit_ssvi, ssvi_to_raw
from b3quant_models.surface.svi import (
    MAX_WING_SLOPE,
    SVI_PARAMS,
    fit_svi_slice,
    refit_svi_constrained,
    slice_arbitrage_margins,
    slice_errors,
    svi_total_variance,
    svi_wing_slopes,
)

REQUIRED_COLUMNS = ("underlying_ticker", "expiry", "t", "k", "iv", "weight")
_QUALITY_COLUMNS = ["rmse_vol_pts", "wrmse_vol_pts", "max_abs_err_vol_pts", "atm_iv"]
CHECK_TOL = 1e-8

PARAM_COLUMNS = [
    "underlying_ticker", "expiry", "t", *SVI_PARAMS, "rmse_vol_pts", "wrmse_vol_pts", "max_abs_err_vol_pts",
    "n_quotes", "k_min_quoted", "k_max_quoted", "atm_iv", "forward", "status", "reason", "repaired",
    "repair", "model", "model_note", "ssvi_theta", "ssvi_rho", "ssvi_eta", "ssvi_gamma",
]


@dataclass
class SurfaceFit:
    """Result of :func:`fit_surfaces` for one trading day.

    params: one row per underlying × expiry, fitted or not (status 'ok' / 'too_few_quotes' / 'fit_failed').
    violations: arbitrage findings; ``stage`` 'raw_fit' (before repair) and 'final' (what remains).
    dropped: input rows not used, with ``reason``.
    """

    params: pd.DataFrame
    violations: pd.DataFrame
    dropped: pd.DataFrame
    k_grid: np.ndarray = field(default_factory=lambda: DEFAULT_K_GRID.copy())
    n_input: int = 0

    @property
    def final_violations(self) -> pd.DataFrame:
        return self.violations[self.violations["stage"] == "final"].reset_index(drop=True)

    def summary(self) -> dict:
        """Counts worth logging as asset metadata."""
        p = self.params
        return {
            "n_input_quotes": int(self.n_input),
            "n_dropped": len(self.dropped),
            "dropped_by_reason": {str(k): int(v) for k, v in self.dropped["reason"].value_counts().items()},
            "n_slices": len(p),
            "n_fitted": int((p["status"] == "ok").sum()),
            "status_counts": {str(k): int(v) for k, v in p["status"].value_counts().items()},
            "n_repaired": int(p["repaired"].sum()),
            "n_raw_violations": int((self.violations["stage"] == "raw_fit").sum()),
            "n_final_violations": int((self.violations["stage"] == "final").sum()),
            "model_by_underlying": {
                str(u): str(m)
                for u, m in p.loc[p["status"] == "ok"].groupby("underlying_ticker")["model"].first().items()
            },
        }


# ------------------------------------------------------------------------------------------- cleaning
def clean_quotes(quotes: pd.DataFrame, k_max: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split quotes into (kept, dropped-with-reason); the first failing rule is the reason."""
    missing = [c for c in REQUIRED_COLUMNS if c not in quotes.columns]
    if missing:
        raise ValueError(f"quotes missing columns {missing}")
    q = quotes.copy()
    q["expiry"] = pd.to_datetime(q["expiry"])
    num = {c: pd.to_numeric(q[c], errors="coerce").to_numpy(dtype=float) for c in ("t", "k", "iv", "weight")}
    rules = [
        ("missing_key", q["underlying_ticker"].isna().to_numpy() | q["expiry"].isna().to_numpy()),
        ("non_finite", ~np.all([np.isfinite(v) for v in num.values()], axis=0)),
        ("non_positive_t", ~(num["t"] > 0)),
        ("non_positive_iv", ~(num["iv"] > 0)),
        ("non_positive_weight", ~(num["weight"] > 0)),
        ("abs_k_gt_k_max", ~(np.abs(num["k"]) <= k_max)),
    ]
    reason = np.full(len(q), "", dtype=object)
    for name, mask in rules:
        reason[(reason == "") & mask] = name
    drop = reason != ""
    dropped = quotes.loc[drop].copy()
    dropped["reason"] = reason[drop]
    kept = q.loc[~drop].copy()
    for c, v in num.items():
        kept[c] = v[~drop]
    return kept, dropped


# -------------------------------------------------------------------------------------------- helpers
def _slice_stats(kept: pd.DataFrame) -> dict:
    """Per-slice median t, quoted k range and mean finite forward, from one groupby."""
    if not len(kept):
        return {}
    frame = kept[["underlying_ticker", "expiry", "t", "k"]].copy()
    spec = {"t": ("t", "median"), "k_min_quoted": ("k", "min"), "k_max_quoted": ("k", "max")}
    if "forward" in kept.columns:
        f = pd.to_numeric(kept["forward"], errors="coerce").to_numpy(dtype=float)
        frame["forward"] = np.where(np.isfinite(f), f, np.nan)
        spec["forward"] = ("forward", "mean")
    agg = frame.groupby(["underlying_ticker", "expiry"], sort=True).agg(**spec)
    return {(u, pd.Timestamp(e)): r for (u, e), r in zip(agg.index, agg.to_dict("records"), strict=True)}


def _errors(k, iv, t, weight, p) -> tuple[float, float, float]:
    """(RMSE, weighted RMSE, max abs error) in vol points; inf when the fit has w ≤ 0 at a quote."""
    return slice_errors(k, iv, float(t), weight, *(float(v) for v in p))


_NO_FLOOR = np.zeros(0)


def _slice_ok(p, k_grid, floor) -> tuple[bool, bool]:
    """(butterfly_ok, calendar_ok) for raw params p on the grid, same tolerance as the public checks."""
    g_min, c_min = slice_arbitrage_margins(*(float(v) for v in p), k_grid, _NO_FLOOR if floor is None else floor)
    return bool(g_min >= -CHECK_TOL), bool(c_min >= -CHECK_TOL)


def _repair_underlying(rows: list[dict], data: dict, k_grid: np.ndarray, max_wing_slope: float) -> None:
    """Forward pass over fitted slices (sorted by t); refit in place where arbitrage is found."""
    prev_w = None
    prev_p = None
    for row in rows:
        k, iv, wt = data[row["_key"]]
        p = tuple(row[c] for c in SVI_PARAMS)
        bfly_ok, cal_ok = _slice_ok(p, k_grid, prev_w)
        if not (bfly_ok and cal_ok):
            what = [] if bfly_ok else ["butterfly"]
            if not cal_ok:
                what.append(f"calendar vs {pd.Timestamp(row['_prev_expiry']).date()}")
            starts = [p]
            if prev_p is not None:
                # previous slice shifted up to this one's ATM level: calendar-feasible by construction
                lift = max(float(svi_total_variance(0.0, *p) - svi_total_variance(0.0, *prev_p)), 0.0)
                starts.append((prev_p[0] + lift + 1e-6, *prev_p[1:]))
            # every start is refitted and the feasible result with the best fit kept: a refit is cheap now,
            # and a worse repair here would also raise the floor every later expiry must respect
            best = None
            for s in starts:
                res = refit_svi_constrained(k, iv, row["t"], wt, s, k_grid, floor_w=prev_w,
                                            max_wing_slope=max_wing_slope)
                if (res.success and all(_slice_ok(res.params, k_grid, prev_w))
                        and (best is None or res.objective < best.objective)):
                    best = res
            if best is None:
                # last resort: a nearly flat smile at the slice's ATM level (g ≈ 1, no butterfly arbitrage),
                # from which the penalty path reaches the feasible set where the raw fit's basin does not
                w_atm = float(svi_total_variance(0.0, *p))
                res = refit_svi_constrained(k, iv, row["t"], wt, (w_atm, 1e-3, 0.0, 0.0, 0.1), k_grid,
                                            floor_w=prev_w, max_wing_slope=max_wing_slope)
                if res.success and all(_slice_ok(res.params, k_grid, prev_w)):
                    best = res
            if best is not None:
                row.update(dict(zip(SVI_PARAMS, best.params, strict=True)))
                row["repaired"] = True
                row["repair"] = "refit with " + " + ".join(what) + " constraints"
            else:
                row["repair"] = "repair failed (" + " + ".join(what) + "); raw fit kept"
        prev_p = tuple(row[c] for c in SVI_PARAMS)
        prev_w = svi_total_variance(k_grid, *prev_p)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate violation frames without pandas' empty-frame dtype warning."""
    non_empty = [f for f in frames if len(f)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else frames[0].iloc[:0].reset_index(drop=True)


def _checks(params: pd.DataFrame, k_grid: np.ndarray, stage: str) -> pd.DataFrame:
    return _concat([butterfly_violations(params, k_grid, tol=CHECK_TOL).assign(stage=stage),
                    calendar_violations(params, k_grid, tol=CHECK_TOL).assign(stage=stage)])


# ----------------------------------------------------------------------------------------------- main
def fit_surfaces(
    quotes: pd.DataFrame,
    *,
    min_quotes: int = 5,
    k_max: float = 0.5,
    k_grid: np.ndarray = DEFAULT_K_GRID,
    repair: bool = True,
    use_ssvi: bool = True,
    ssvi_margin_vol_pts: float = 0.0,
    order_wings: bool = False,
    max_wing_slope: float = MAX_WING_SLOPE,
) -> SurfaceFit:
    """Fit one trading day's option quotes into arbitrage-checked SVI/SSVI surfaces (see module doc).

    ``ssvi_margin_vol_pts`` > 0 prefers SSVI (fewer parameters, arbitrage-free by construction) when its
    weighted RMSE is within that many vol points of the SVI slices; 0 means strictly "whichever fits better".
    ``order_wings`` fits each expiry with wing slopes at least those of the previous one (see
    :func:`fit_svi_slice`); ``repair=False`` / ``use_ssvi=False`` switch off steps 4 / 5.
    """
    if min_quotes < 1:
        raise ValueError("min_quotes must be >= 1")
    k_grid = np.asarray(k_grid, dtype=float)
    kept, dropped = clean_quotes(quotes, k_max=k_max)

    # every slice present in the input gets a row, even if all its quotes were dropped
    keys_all = pd.DataFrame({
        "underlying_ticker": quotes["underlying_ticker"].to_numpy(),
        "expiry": pd.to_datetime(quotes["expiry"]).to_numpy(),
        "t": pd.to_numeric(quotes["t"], errors="coerce").to_numpy(),
    }).dropna(subset=["underlying_ticker", "expiry"])
    slice_t = keys_all.groupby(["underlying_ticker", "expiry"])["t"].median()
    # one groupby for positions and per-slice aggregates, then plain numpy per slice (a real session
    # has ~1000 slices, most tiny: numpy calls on a handful of quotes cost more than the numbers)
    groups = kept.groupby(["underlying_ticker", "expiry"], sort=True).indices if len(kept) else {}
    cols = {c: kept[c].to_numpy(dtype=float) for c in ("t", "k", "iv", "weight")}
    stats = _slice_stats(kept)

    rows: list[dict] = []
    data: dict = {}
    prev_slopes: dict = {}  # iteration is sorted by (underlying, expiry), i.e. by t within an underlying
    for (und, exp), t_med in slice_t.sort_index().items():
        key = (und, pd.Timestamp(exp))
        pos = groups.get(key)
        n = 0 if pos is None else len(pos)
        row = dict.fromkeys(PARAM_COLUMNS, np.nan)
        row.update(underlying_ticker=und, expiry=exp, n_quotes=n, repaired=False, repair="", reason="", model="",
                   model_note="", _key=(und, exp), t=float(t_med))
        if n:
            row.update(stats[key])
            k, iv, wt = cols["k"][pos], cols["iv"][pos], cols["weight"][pos]
        if n < min_quotes:
            row.update(status="too_few_quotes", reason=f"{n} usable quotes < min_quotes={min_quotes}")
            rows.append(row)
            continue
        data[(und, exp)] = (k, iv, wt)
        try:
            min_slopes = prev_slopes.get(und, (0.0, 0.0)) if order_wings else (0.0, 0.0)
            res = fit_svi_slice(k, iv, row["t"], wt, max_wing_slope=max_wing_slope, min_slopes=min_slopes)
            if not np.all(np.isfinite(res.params)):
                raise FloatingPointError("non-finite parameters")
            row.update(dict(zip(SVI_PARAMS, res.params, strict=True)), status="ok", model="svi")
            prev_slopes[und] = svi_wing_slopes(res.params[1], res.params[2])
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            row.update(status="fit_failed", reason=f"{type(exc).__name__}: {exc}")
        rows.append(row)

    raw = _finalize(rows, data)
    raw_viol = _checks(raw, k_grid, "raw_fit")

    by_und: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] == "ok":
            by_und.setdefault(row["underlying_ticker"], []).append(row)
    for und_rows in by_und.values():
        und_rows.sort(key=lambda r: r["t"])
        for prev, cur in pairwise(und_rows):
            cur["_prev_expiry"] = prev["expiry"]
        if repair:
            _repair_underlying(und_rows, data, k_grid, max_wing_slope)
        if use_ssvi and len(und_rows) >= 2:
            _maybe_ssvi(und_rows, data, k_grid, ssvi_margin_vol_pts)
        else:
            for r in und_rows:
                r["model_note"] = "svi (ssvi not tried: " + ("disabled)" if not use_ssvi else "single expiry)")

    params = _finalize(rows, data)
    violations = _concat([raw_viol, _checks(params, k_grid, "final")])
    if "trade_date" in quotes.columns and quotes["trade_date"].nunique(dropna=True) == 1:
        params.insert(0, "trade_date", pd.Timestamp(quotes["trade_date"].dropna().iloc[0]))
    return SurfaceFit(params=params, violations=violations, dropped=dropped.reset_index(drop=True),
                      k_grid=k_grid, n_input=len(quotes))


def _wrmse_underlying(und_rows: list[dict], data: dict, params: list[tuple]) -> float:
    """Weighted RMSE in vol points, each slice's weights normalized to 1, averaged over slices."""
    mse = [_errors(*data[r["_key"]][:2], r["t"], data[r["_key"]][2], p)[1] ** 2
           for r, p in zip(und_rows, params, strict=True)]
    return float(np.sqrt(np.mean(mse)))


def _maybe_ssvi(und_rows: list[dict], data: dict, k_grid: np.ndarray, margin: float) -> None:
    svi_p = [tuple(r[c] for c in SVI_PARAMS) for r in und_rows]
    svi_err = _wrmse_underlying(und_rows, data, svi_p)
    slices = [(data[r["_key"]][0], data[r["_key"]][1], r["t"], data[r["_key"]][2]) for r in und_rows]
    theta0 = np.array([float(svi_total_variance(0.0, *p)) for p in svi_p])
    try:
        fit = fit_ssvi(slices, theta0, rho0=float(np.median([p[2] for p in svi_p])))
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        for r in und_rows:
            r["model_note"] = f"svi (ssvi failed: {exc})"
        return
    ssvi_p = [ssvi_to_raw(th, fit.rho, fit.eta, fit.gamma) for th in fit.theta]
    ssvi_err = _wrmse_underlying(und_rows, data, ssvi_p)
    # SSVI is arbitrage-free in theory; verify numerically on the same grid before trusting it
    prev = None
    ssvi_clean = True
    for p in ssvi_p:
        ok = _slice_ok(p, k_grid, prev)
        ssvi_clean &= ok[0] and ok[1]
        prev = svi_total_variance(k_grid, *p)
    svi_clean = all(not r["repair"].startswith("repair failed") for r in und_rows)
    choose = ssvi_clean and np.isfinite(ssvi_err) and (ssvi_err <= svi_err + margin or not svi_clean)
    note = f"wrmse ssvi {ssvi_err:.3f} vs svi {svi_err:.3f} vol pts"
    if not ssvi_clean:
        note += ", ssvi failed arbitrage check"
    elif not svi_clean and ssvi_err > svi_err + margin:
        note += ", svi repair failed"
    for r, p, th in zip(und_rows, ssvi_p, fit.theta, strict=True):
        r.update(ssvi_theta=float(th), ssvi_rho=fit.rho, ssvi_eta=fit.eta, ssvi_gamma=fit.gamma)
        if choose:
            r.update(dict(zip(SVI_PARAMS, p, strict=True)), model="ssvi", repaired=False)
            if r["repair"]:
                r["repair"] = f"superseded by ssvi (svi: {r['repair']})"
        r["model_note"] = f"{'ssvi' if choose else 'svi'} ({note})"


def _finalize(rows: list[dict], data: dict) -> pd.DataFrame:
    """Fill fit-quality columns from the current params and build the params DataFrame (column-wise)."""
    quality = np.full((len(rows), 4), np.nan)
    for i, row in enumerate(rows):
        if row["status"] == "ok":
            k, iv, wt = data[row["_key"]]
            a, b, rho, m, sigma = (float(row[c]) for c in SVI_PARAMS)
            quality[i, :3] = slice_errors(k, iv, float(row["t"]), wt, a, b, rho, m, sigma)
            w_atm = a + b * (math.sqrt(m * m + sigma * sigma) - rho * m)  # w(0)
            quality[i, 3] = math.sqrt(w_atm / row["t"]) if w_atm > 0 else np.nan
    df = pd.DataFrame({c: [row[c] for row in rows] for c in PARAM_COLUMNS}, columns=PARAM_COLUMNS)
    df[_QUALITY_COLUMNS] = quality
    df["expiry"] = pd.to_datetime(df["expiry"])
    df["n_quotes"] = df["n_quotes"].astype(int)
    df["repaired"] = df["repaired"].astype(bool)
    return df.sort_values(["underlying_ticker", "t"], kind="stable").reset_index(drop=True)
