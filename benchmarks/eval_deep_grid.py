"""Held-out scores of the deep grid forecasters on a materialized sample market (docs/models.md, "Deep grid
forecasters").

    uv run python benchmarks/eval_deep_grid.py --data-dir data [--quick] [--lookback 10] [--out-dir DIR]

Reads ``b3.surface_grid_points``, ``b3.underlying_quotes``, ``b3.option_features`` and ``b3.option_iv`` from
the DuckDB of ``b3q demo`` and the sample market's config from the landing folder's manifest (the true grid
and its floor; the per-option floor). Prints and writes (``--out-dir``):

* the grid table: every model vs persistence and the grid floor (RMSE/MAE/bias, gap closed, Diebold–Mariano
  with HLN on the daily MSEs, node and dense arbitrage counts, training time);
* per-option scores of every grid model through ``per_option.option_forecasts_from_grid`` vs persistence and
  the per-series floor, on the test block's option rows;
* the VAE: reconstruction RMSE, 30 % masked fill-in vs the SVI and SSVI re-fits, anomaly threshold;
* the ViT's second target: next-21-session realized vol vs HAR-RV; its attention map as a PNG.

``--cache`` keeps the built sequences (the true grid takes minutes to compute) in a pickle.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from b3quant_models.features.dataset import option_training_dataset, sample_market_truth
from b3quant_models.models.deep import GRID_MODELS, FitConfig, build_grid_sequences
from b3quant_models.models.deep.evaluate import evaluate_grid_models, split_sequences
from b3quant_models.models.deep.fill import fill_in_experiment
from b3quant_models.models.deep.per_option import option_forecasts_from_grid
from b3quant_models.models.deep.realized import HARRV, rv_scores
from b3quant_models.models.metrics import diebold_mariano, regression_metrics
from b3quant_models.sample_market import is_generated
from b3quant_models.sample_market.config import SampleMarketConfig
from b3quant_models.sample_market.grid_truth import grid_truth

# the settings the docs report (chosen on the validation block only; see docs/models.md)
RECURRENT = {"scale_output": True, "linear_skip": True}
PARAMS = {
    "lstm_grid": RECURRENT, "gru_grid": RECURRENT,
    "pinn_grid": {**RECURRENT},
    "pinn_grid (no physics)": {**RECURRENT, "butterfly_weight": 0.0, "calendar_weight": 0.0, "pde_weight": 0.0},
    "vae_latent": {}, "vit_grid": {},
}
CLASSES = {"lstm_grid": "lstm_grid", "gru_grid": "gru_grid", "pinn_grid": "pinn_grid",
           "pinn_grid (no physics)": "pinn_grid", "vae_latent": "vae_latent", "vit_grid": "vit_grid"}


def fit_config(quick: bool) -> FitConfig:
    if quick:
        return FitConfig.quick(lr=5e-4, warmup_epochs=3, min_epochs=10, lr_schedule="cosine")
    return FitConfig(max_epochs=150, lr=5e-4, warmup_epochs=5, min_epochs=40, patience=30, lr_schedule="cosine")


def load(d: Path, lookback: int, cfg: SampleMarketConfig, cache: str | None):
    if cache and Path(cache).is_file():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    con = duckdb.connect(str(d / "b3quant.duckdb"), read_only=True)
    grid = con.sql("select * from b3.surface_grid_points").df()
    und = con.sql("select * from b3.underlying_quotes").df()
    feats = con.sql("select * from b3.option_features").df()
    oiv = con.sql("select * from b3.option_iv").df()
    con.close()
    seqs = build_grid_sequences(grid, und, lookback=lookback, truth=grid_truth(cfg)).with_realized_vol(und)
    opt = option_training_dataset(feats, oiv, sample_market_truth(d / "landing")).frame
    out = {"seqs": seqs, "options": opt}
    if cache:
        with open(cache, "wb") as fh:
            pickle.dump(out, fh)
    return out


def per_option_table(test, fitted: dict, options: pd.DataFrame) -> pd.DataFrame:
    dates = pd.to_datetime(test.keys["trade_date"].unique())
    rows = options[options["trade_date"].isin(dates)].rename(columns={"iv_next_optimal": "iv_opt"})
    grids = {"persistence": test.last.astype(float), "grid floor (optimal)": test.y_opt}
    grids.update({name: m.predict(test) for name, m in fitted.items()})
    out, base = [], None
    for name, g in grids.items():
        f = option_forecasts_from_grid(g, test.last.astype(float), test.keys, test.tenors, test.deltas, rows)
        if base is None:
            base = f
        m = regression_metrics(f["iv_next"], f["forecast"], f["iv"], f["iv_opt"])
        e = ((f["forecast"] - f["iv_next"]) ** 2).groupby(f["trade_date"]).mean()
        eb = ((f["iv"] - f["iv_next"]) ** 2).groupby(f["trade_date"]).mean()
        dm = diebold_mariano(e, eb)
        out.append({"forecaster": name, "rows": int(m["n"]), "rmse_vol_pts": m["rmse_vol_pts"],
                    "improvement_pct": m["improvement_pct"], "captured_pct": m.get("captured_pct"),
                    "dm_stat": dm["dm_stat"], "dm_pvalue": dm["dm_pvalue"]})
    fl = base.dropna(subset=["iv_opt"])
    mo = regression_metrics(fl["iv_next"], fl["iv_opt"], fl["iv"], fl["iv_opt"])
    out.append({"forecaster": "per-series floor (iv_next_optimal)", "rows": int(mo["n"]),
                "rmse_vol_pts": mo["rmse_vol_pts"], "improvement_pct": mo["improvement_pct"], "captured_pct": 100.0})
    return pd.DataFrame(out)


def vae_report(test, vae) -> dict:
    q = test.x_mask[:, -1] > 0
    iv = test.last.astype(float)
    dec, _ = vae.project(iv, q)
    rec = 100 * float(np.sqrt(np.mean((dec - iv)[q] ** 2)))
    scores = vae.anomaly_scores(iv, q)
    fill = fill_in_experiment(vae, iv, q, test.tenors, test.deltas, frac=0.3, seed=0)
    return {"reconstruction_rmse_vol_pts": rec, "anomaly_threshold_vol_pts": vae.anomaly_threshold,
            "test_grids_flagged": int(np.nansum(scores > vae.anomaly_threshold)), "test_grids": len(test),
            "vae_stage1": vae.train_info.get("extra"), **{f"fill_{k}": v for k, v in fill.items()}}


def rv_report(parts, vit, out_dir: Path | None) -> dict:
    tr, te = parts["train"], parts["test"]
    har = HARRV().fit(tr.aux["har"], tr.aux["rv_next"])
    y = te.aux["rv_next"]
    p_har, p_vit = har.predict(te.aux["har"]), vit.predict_rv(te)
    rep = {"har_coef": har.coef.round(4).tolist(), "har": rv_scores(y, p_har), "vit": rv_scores(y, p_vit, p_har),
           "note": "test rows whose 21-session window lies inside the data"}
    if out_dir is not None:
        rep["attention_png"] = str(vit.plot_attention(te, out_dir / "vit_attention.png"))
        rep["attention_mean"] = vit.attention_maps(te).mean(axis=0).round(3).tolist()
    return rep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--lookback", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--market-seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=250)
    ap.add_argument("--models", default=",".join(CLASSES), help="comma-separated labels of " + ", ".join(CLASSES))
    ap.add_argument("--max-epochs", type=int, default=None, help="override (smoke runs)")
    ap.add_argument("--cache", default=None, help="pickle of the built sequences (reused when present)")
    ap.add_argument("--out-dir", default=None, help="write the tables (CSV/JSON) and the attention PNG here")
    a = ap.parse_args()
    d = Path(a.data_dir)
    cfg = SampleMarketConfig(seed=a.market_seed, n_days=a.days)
    if not (a.cache and Path(a.cache).is_file()) and not is_generated(d / "landing", cfg):
        raise SystemExit(f"{d / 'landing'} does not hold the sample market {cfg} (pass --market-seed/--days)")
    out_dir = Path(a.out_dir) if a.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load(d, a.lookback, cfg, a.cache)
    seqs = data["seqs"]
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {len(seqs)} samples", flush=True)
    labels = [x for x in a.models.split(",") if x]
    models = {lab: GRID_MODELS[CLASSES[lab]] for lab in labels}
    fc = fit_config(a.quick)
    params = {k: dict(PARAMS[k]) for k in labels}
    if a.max_epochs is not None:
        fc.max_epochs, fc.min_epochs = a.max_epochs, min(fc.min_epochs, a.max_epochs)
        params.get("vae_latent", {})["vae_epochs"] = a.max_epochs
    table, fitted = evaluate_grid_models(seqs, models, params=params, fit_config=fc,
                                         seed=a.seed, log=None)
    parts = split_sequences(seqs)
    info = {"samples": len(seqs), "torch": torch.__version__, "fit_config": fc.to_dict(), "params": PARAMS,
            "split": table.attrs["split"], "load_1min": os.getloadavg()[0]}
    print(json.dumps(info, default=str, indent=1))
    pd.set_option("display.width", 250)
    print(table.T.to_string())
    per_opt = per_option_table(parts["test"], fitted, data["options"])
    print(per_opt.to_string())
    extra = {}
    if "vae_latent" in fitted:
        extra["vae"] = vae_report(parts["test"], fitted["vae_latent"])
    if "vit_grid" in fitted:
        extra["realized_vol"] = rv_report(parts, fitted["vit_grid"], out_dir)
    print(json.dumps(extra, default=float, indent=1))
    if out_dir:
        table.to_csv(out_dir / "grid_table.csv", index=False)
        per_opt.to_csv(out_dir / "per_option_table.csv", index=False)
        (out_dir / "extra.json").write_text(json.dumps({**info, **extra}, default=float, indent=1))


if __name__ == "__main__":
    main()
