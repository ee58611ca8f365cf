"""Surface assets: per-day SVI/SSVI fits with arbitrage checks, and the fixed tenor × delta grid."""

from pathlib import Path

import dagster as dg
import pandas as pd

from ..shared.checks import days_complete_result, days_complete_spec, png_markdown
from ..shared.metadata import per_partition_metadata, rounded
from ..shared.partitions import partition_days, single_run_backfill, trading_day_partitions
from ..shared.resources import data_dir
from .assets import GROUP

MAX_PLOTS_IN_METADATA = 6  # the last day's plots, inline; every plot is also written to data/plots
MAX_RAW_FINDINGS_PER_SLICE = 1.0  # arbitrage_repaired: raw-fit findings per fitted slice before repair
MAX_EXTRAPOLATED_SHARE = 0.5  # grid_mostly_quoted: a day's grid points outside the quoted range


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-day frames with ``trade_date`` as the first column (empty-safe)."""
    if not frames:
        return pd.DataFrame({"trade_date": pd.Series(dtype="datetime64[ns]")})
    df = pd.concat(frames, ignore_index=True)
    return df[["trade_date", *[c for c in df.columns if c != "trade_date"]]]


def _by_day(df: pd.DataFrame):
    for day, g in df.groupby("trade_date", sort=True):
        yield pd.Timestamp(day), g


@dg.multi_asset(
    outs={
        "iv_surface": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Raw-SVI (or SSVI) parameters per underlying × expiry × day, fit RMSE in vol points, "
            "quotes used; slices with too few quotes are reported with a reason, not fitted.",
        ),
        "surface_arbitrage": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Butterfly/calendar arbitrage found in the raw fits and what remains after repair.",
        ),
    },
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[
        dg.AssetCheckSpec("no_butterfly_arbitrage", asset="iv_surface", description="g(k) >= 0 on a dense k-grid"),
        dg.AssetCheckSpec(
            "no_calendar_arbitrage", asset="iv_surface", description="total variance non-decreasing in maturity"
        ),
        days_complete_spec("iv_surface", "every_day_has_fitted_slices", "fitted surface slices"),
        dg.AssetCheckSpec(
            "arbitrage_repaired", asset="surface_arbitrage", blocking=False,
            description="No finding left after repair (stage 'final'), and raw-fit findings per fitted slice "
            f"at most {MAX_RAW_FINDINGS_PER_SLICE} (more means the fitter itself regressed).",
        ),
    ],
    group_name=GROUP,
    compute_kind="scipy",
)
def iv_surface(context: dg.AssetExecutionContext, option_iv: pd.DataFrame):
    # Library code is imported in asset bodies (numba, scipy): loading the code location stays cheap.
    from b3quant_models.option_iv import surface_quotes
    from b3quant_models.surface import butterfly_violations, calendar_violations
    from b3quant_models.surface.batch import fit_surfaces_by_day

    quotes = surface_quotes(option_iv)
    context.log.info(f"fitting {quotes['trade_date'].nunique()} day(s) of surfaces")
    params, violations = fit_surfaces_by_day(quotes)
    p, v = _stack(params), _stack(violations)
    fitted = p[p["status"] == "ok"] if len(p) else p
    per_partition_metadata(context, p, lambda g, day: _surface_metadata(g), asset_key="iv_surface")
    per_partition_metadata(context, v, lambda g, day: _arbitrage_metadata(g), asset_key="surface_arbitrage")
    yield dg.Output(p, output_name="iv_surface", metadata=_surface_metadata(p))
    yield dg.Output(v, output_name="surface_arbitrage", metadata=_arbitrage_metadata(v))
    counts = fitted.groupby("trade_date").size() if len(fitted) else pd.Series(dtype=int)
    yield days_complete_result(
        "iv_surface", "every_day_has_fitted_slices", partition_days(context), counts, "fitted slices", context
    )
    yield arbitrage_check(v, len(fitted))
    checks = (("no_butterfly_arbitrage", butterfly_violations), ("no_calendar_arbitrage", calendar_violations))
    for name, finder in checks:
        found = _stack([finder(g[g["status"] == "ok"]).assign(trade_date=d) for d, g in _by_day(p)])
        yield dg.AssetCheckResult(
            asset_key="iv_surface",
            check_name=name,
            passed=len(found) == 0,
            metadata={
                "violations": len(found),
                "sample": dg.MetadataValue.md(found.head(10).to_markdown(index=False) if len(found) else "_none_"),
            },
        )


def _surface_metadata(p: pd.DataFrame) -> dict:
    """iv_surface's numbers for a run's or a day's slices."""
    fitted = p[p["status"] == "ok"] if len(p) else p
    status = p["status"].value_counts().rename_axis("status").reset_index(name="slices") if len(p) else p
    return rounded({
        "slices": len(p),
        "fitted_slices": len(fitted),
        "median_rmse_vol_pts": float(fitted["rmse_vol_pts"].median()) if len(fitted) else float("nan"),
        "repaired_slices": int(p["repaired"].sum()) if len(p) else 0,
        "status": dg.MetadataValue.md(status.to_markdown(index=False) if len(status) else "_none_"),
    })


def _arbitrage_metadata(v: pd.DataFrame) -> dict:
    """Findings before repair (``raw_fit``) and remaining after it (``final``), per check."""
    stage = v["stage"] if len(v) and "stage" in v.columns else pd.Series(dtype=str)
    meta: dict = {"findings": len(v), "raw_fit_findings": int((stage == "raw_fit").sum()),
                  "final_findings": int((stage == "final").sum())}
    if len(v) and "check" in v.columns:
        t = v.groupby(["stage", "check"]).size().rename("findings").reset_index()
        meta["by_stage_and_check"] = dg.MetadataValue.md(t.to_markdown(index=False))
    return meta


def arbitrage_check(v: pd.DataFrame, fitted_slices: int) -> dg.AssetCheckResult:
    """``arbitrage_repaired`` on the run's findings (see its spec)."""
    stage = v["stage"] if len(v) else pd.Series(dtype=str)
    final = v[stage == "final"] if len(v) else v
    raw_per_slice = float((stage == "raw_fit").sum() / fitted_slices) if fitted_slices else 0.0
    days = sorted({str(pd.Timestamp(d).date()) for d in final["trade_date"]}) if len(final) else []
    return dg.AssetCheckResult(
        asset_key="surface_arbitrage",
        check_name="arbitrage_repaired",
        passed=not len(final) and raw_per_slice <= MAX_RAW_FINDINGS_PER_SLICE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded({
            "final_findings": len(final),
            "raw_fit_findings_per_fitted_slice": raw_per_slice,
            "days_with_final_findings": ", ".join(days[:20]) + (" ..." if len(days) > 20 else "") or "none",
        }),
    )


def extrapolation_check(grid: pd.DataFrame) -> dg.AssetCheckResult:
    """``grid_mostly_quoted``: every day's extrapolated share at most :data:`MAX_EXTRAPOLATED_SHARE`."""
    share = grid.groupby("trade_date")["extrapolated"].mean() if len(grid) else pd.Series(dtype=float)
    bad = share[share > MAX_EXTRAPOLATED_SHARE]
    return dg.AssetCheckResult(
        asset_key="surface_grid_points",
        check_name="grid_mostly_quoted",
        passed=bad.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded({
            "extrapolated_share": float(grid["extrapolated"].mean()) if len(grid) else 0.0,
            "max_day_share": float(share.max()) if len(share) else 0.0,
            "days_over_limit": len(bad),
            "worst_days": ", ".join(f"{pd.Timestamp(d).date()} ({s:.0%})" for d, s in
                                    bad.sort_values(ascending=False).head(10).items()) or "none",
        }),
    )


@dg.asset(
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    metadata={"partition_expr": "trade_date"},
    check_specs=[
        dg.AssetCheckSpec(
            "grid_mostly_quoted", asset="surface_grid_points", blocking=False,
            description=f"Each day at most {MAX_EXTRAPOLATED_SHARE:.0%} of the grid's points extrapolated beyond "
            "the quoted strikes and expiries (the models train on quoted points only).",
        ),
    ],
    group_name=GROUP,
    compute_kind="numpy",
)
def surface_grid_points(context: dg.AssetExecutionContext, iv_surface: pd.DataFrame, option_iv: pd.DataFrame):
    """Each underlying's surface on a fixed tenor (21/42/63/126/252 business days) × call-delta grid —
    the fixed-shape "image" sequence and vision models consume; extrapolated points are flagged."""
    from b3quant_models.option_iv import surface_quotes
    from b3quant_models.surface import plot_surface, surface_grid

    grids, plots = [], {}
    quotes = surface_quotes(option_iv)
    plot_dir = data_dir() / "plots"
    days = sorted(iv_surface["trade_date"].unique()) if len(iv_surface) else []
    for day, p in _by_day(iv_surface):
        g = surface_grid(p[p["status"] == "ok"]).assign(trade_date=day)
        grids.append(g)
        if day == days[-1]:
            q = quotes[quotes["trade_date"] == day]
            for und in sorted(p["underlying_ticker"].unique())[:MAX_PLOTS_IN_METADATA]:
                png = plot_surface(q, p, g, und, date=day.date())
                path = Path(plot_dir, f"{day.date()}", f"{und}.png")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png)
                plots[und] = (png, path)
    grid = _stack(grids)
    meta: dict = rounded({
        "points": len(grid),
        "extrapolated_share": float(grid["extrapolated"].mean()) if len(grid) else 0.0,
    })
    per_partition_metadata(context, grid, lambda g, day: {
        "points": len(g), "extrapolated_share": float(g["extrapolated"].mean()) if len(g) else 0.0})
    if plots:
        meta["plots"] = dg.MetadataValue.path(str(next(iter(plots.values()))[1].parent))
        # Output metadata is copied onto every partition of a range run; the pictures (~80 kB each)
        # go once, as an observation of the last day, so a year's backfill stays small.
        images = {f"surface_{und}": png_markdown(png, und) for und, (png, _) in plots.items()}
        context.log_event(
            dg.AssetObservation(asset_key="surface_grid_points", partition=str(days[-1].date()), metadata=images)
        )
    yield dg.Output(grid, metadata=meta)
    yield extrapolation_check(grid)

