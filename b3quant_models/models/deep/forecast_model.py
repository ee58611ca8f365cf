"""The deep grid forecasters behind the common ``ForecastModel`` interface, per grid point and per option.

Wrapping a :class:`GridForecaster` as a ``ForecastModel`` puts it on the trees' path unchanged: the same
walk-forward folds and held-out block (``train_model``), baselines, out-of-fold and test prediction rows,
MLflow run, model card, comparison, promotion and the service. The rows it is given decide the output:

- **grid rows** (``grid_training_set``: underlying, tenor_days, delta): the network's change at the row's cell;
- **option rows** (``training_set``): the change at the contract's (tenor, call delta), interpolated
  (``grid_to_option``), added to the contract's own IV — the per-option forecast *through the grid*.

Either way the network's input is the underlying's last ``lookback`` grids, cut from the history the
pipeline passes (``SeriesHistory.grid_window``: the grid dataset's own history, or the grid history attached
to the option dataset's with ``with_grid``), plus the underlying features of the rows (``ret_1d`` ...).
Targets are grids: the rows' own next-day values (grid rows) or the underlying's next-session grid read from
the same history (option rows; only rows whose target date precedes the evaluated block reach ``fit``, so
those grids precede it too). Early stopping uses the last ``val_frac`` of the training sessions (purged),
never the fold's validation block. A row whose underlying has no grid that day gets persistence (change 0),
counted in ``train_info``/``last_fallback_rows``.

To add a network (deeplib's VAE, ViT ...): subclass ``DeepGridModel`` with ``network = <GridForecaster
subclass>`` and register ``"b3quant_models.models.deep.forecast_model:<Class>"`` in the registry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from b3quant_models.features.history import GRID_SERIES_KEY
from b3quant_models.models.base import ANCHOR, ForecastModel
from b3quant_models.models.deep.data import DEFAULT_EXTRA_COLUMNS, FILL_LEVEL, GridSequences
from b3quant_models.models.deep.engine import FitConfig, torch_versions
from b3quant_models.models.deep.grid_base import GridForecaster
from b3quant_models.models.deep.grid_to_option import interpolate_grid, option_changes
from b3quant_models.models.deep.pinn import PINNGridForecaster
from b3quant_models.models.deep.recurrent import GRUGridForecaster, LSTMGridForecaster
from b3quant_models.models.deep.vae import VAELatentForecaster
from b3quant_models.models.deep.vit import ViTGridForecaster

if TYPE_CHECKING:
    from b3quant_models.features.history import SeriesHistory

logger = logging.getLogger(__name__)
NETWORK_DIR = "network"
_FIT_KEYS = ("max_epochs", "batch_size", "lr", "weight_decay", "patience", "device", "amp")


def _ffill_window(iv: np.ndarray) -> np.ndarray:
    """Fill gaps of (n, L, T, D) windows point-in-time: a cell's last value in the window, then that
    session's mean over the grid, then ``FILL_LEVEL`` (the mask tells the network which cells were real)."""
    out = iv.copy()
    for j in range(1, out.shape[1]):
        gap = ~np.isfinite(out[:, j])
        out[:, j][gap] = out[:, j - 1][gap]
    flat = out.reshape(*out.shape[:2], int(np.prod(out.shape[2:])))
    seen = np.isfinite(flat)
    cnt = seen.sum(axis=2)
    mean = np.where(cnt > 0, np.where(seen, flat, 0.0).sum(axis=2) / np.maximum(cnt, 1), FILL_LEVEL)
    return np.where(np.isfinite(out), out, mean[:, :, None, None])


def _to_axes(a: np.ndarray, tenors, deltas, t0, d0) -> np.ndarray:
    """(n, L, T, D) values on axes (tenors, deltas) placed on the trained axes (t0, d0); NaN/0 where absent."""
    out = np.full((*a.shape[:2], len(t0), len(d0)), np.nan if a.dtype.kind == "f" else 0, dtype=float)
    ti = {int(t): i for i, t in enumerate(tenors)}
    di = {round(float(d), 4): i for i, d in enumerate(deltas)}
    for j, t in enumerate(t0):
        for k, d in enumerate(d0):
            if int(t) in ti and round(float(d), 4) in di:
                out[:, :, j, k] = a[:, :, ti[int(t)], di[round(float(d), 4)]]
    return out


class DeepGridModel(ForecastModel):
    """A torch grid forecaster as a ``ForecastModel`` (see the module docstring)."""

    name: ClassVar[str] = "deep_grid"
    network: ClassVar[type[GridForecaster]] = GRUGridForecaster
    mlflow_flavor: ClassVar[str] = "pytorch"  # the fitted nn.Module (``net_model.net``), models.mlflow_models

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.net_model: GridForecaster | None = None
        self.last_fallback_rows = 0

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        fc = FitConfig()
        return {"lookback": 10, **cls.network.default_params(), "val_frac": 0.2,
                **{k: getattr(fc, k) for k in _FIT_KEYS}}

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        return {"hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
                "lr": trial.suggest_float("lr", 5e-4, 5e-3, log=True),
                "lookback": trial.suggest_int("lookback", 5, 20)}

    @property
    def history_length(self) -> int:
        return int(self.params["lookback"])

    @property
    def reads_grid_history(self) -> bool:
        return True

    # ------------------------------------------------------------------ samples
    def _extra_columns(self, X: pd.DataFrame) -> list[str]:
        if self.net_model is not None:
            return list(self.net_model.shape["extra_columns"])
        return [c for c in DEFAULT_EXTRA_COLUMNS if c in X.columns]

    def _samples(self, X: pd.DataFrame, history: SeriesHistory | None, training: bool = False
                 ) -> tuple[GridSequences, np.ndarray, np.ndarray]:
        """(one sample per underlying-day of X with a grid that day, sample index of each row (−1: none),
        the history's (underlying, day) pairs as a set-able frame)."""
        if history is None:
            raise ValueError(f"{self.name} needs the grid history (grid dataset history or SeriesHistory.with_grid)")
        grid = history.grid if history.grid is not None else history
        if grid.key != GRID_SERIES_KEY and self.net_model is not None and not training:
            # e.g. MLflow's signature sample (rows only): no grid to read -> persistence for every row, logged
            logger.warning("%s: no grid history given; forecasting persistence for %d rows", self.name, len(X))
            return None, np.full(len(X), -1, dtype=np.int64), None
        if grid.key != GRID_SERIES_KEY:
            raise ValueError(f"{self.name} forecasts through the surface grid: pass the grid dataset's history, or "
                             "attach it to the option history (SeriesHistory.with_grid(grid_history(...)))")
        panel_days = grid.panel[["underlying_ticker", "trade_date"]].drop_duplicates()
        keys = X[["underlying_ticker", "trade_date"]].copy()
        keys["trade_date"] = pd.to_datetime(keys["trade_date"]).astype("datetime64[ns]")
        uniq = keys.drop_duplicates().merge(panel_days, how="inner").sort_values(["trade_date", "underlying_ticker"])
        uniq = uniq.reset_index(drop=True)
        L = self.history_length
        iv, finite, tenors, deltas = history.grid_window(uniq, L, "iv")
        quoted = finite
        if "extrapolated" in grid.values:
            ex = history.grid_window(uniq, L, "extrapolated")[0]
            quoted = finite & (ex == 0)
        if self.net_model is not None:  # a history with fewer cells than trained: the missing ones are masked
            t0, d0 = self.net_model.shape["tenors"], self.net_model.shape["deltas"]
            if list(map(int, tenors)) != list(t0) or [round(float(d), 4) for d in deltas] != [round(d, 4) for d in d0]:
                iv, quoted = _to_axes(iv, tenors, deltas, t0, d0), _to_axes(quoted, tenors, deltas, t0, d0) > 0
                tenors, deltas = np.asarray(t0), np.asarray(d0)
        cols = self._extra_columns(X)
        first = X.assign(trade_date=keys["trade_date"]).drop_duplicates(["underlying_ticker", "trade_date"])
        extra = uniq.merge(first[["underlying_ticker", "trade_date", *cols]], how="left")[cols].to_numpy(float)
        pos = pd.Series(np.arange(len(uniq)), index=pd.MultiIndex.from_frame(uniq))
        sample = pos.reindex(pd.MultiIndex.from_frame(keys)).to_numpy()
        sample = np.where(np.isnan(sample), -1, sample).astype(np.int64)
        n, nt, nd = len(uniq), len(tenors), len(deltas)
        k = uniq.assign(target_date=pd.NaT)
        seqs = GridSequences(
            x=_ffill_window(iv).astype(np.float32), x_mask=quoted.astype(np.float32), extra=extra.astype(np.float32),
            y=np.full((n, nt, nd), np.nan, np.float32), y_mask=np.zeros((n, nt, nd), bool),
            keys=k[["trade_date", "target_date", "underlying_ticker"]], tenors=[int(t) for t in tenors],
            deltas=[round(float(d), 4) for d in deltas], extra_columns=cols,
        )
        return seqs, sample, panel_days

    def _targets(self, seqs: GridSequences, sample: np.ndarray, X: pd.DataFrame, dy: np.ndarray,
                 history: SeriesHistory, panel_days: pd.DataFrame) -> None:
        """Fill ``seqs.y``/``y_mask``/``target_date`` in place (grid rows: their own targets; option rows: the
        underlying's next-session grid from the history, cells quoted on both days)."""
        ok = sample >= 0
        td = pd.to_datetime(X["target_date"]).astype("datetime64[ns]").to_numpy()
        tdates = np.full(len(seqs), np.datetime64("NaT"), dtype="datetime64[ns]")
        tdates[sample[ok]] = td[ok]
        seqs.keys["target_date"] = tdates
        if "ticker" not in X.columns:  # grid rows
            tn, dn = np.asarray(seqs.tenors), np.asarray(seqs.deltas)
            tv, dv = X["tenor_days"].to_numpy(int), X["delta"].astype(float).round(4).to_numpy()
            t_i = np.minimum(np.searchsorted(tn, tv), len(tn) - 1)
            d_i = np.minimum(np.searchsorted(dn, dv), len(dn) - 1)
            on = ok & (tn[t_i] == tv) & np.isclose(dn[d_i], dv)
            seqs.y[sample[on], t_i[on], d_i[on]] = (X[ANCHOR].to_numpy(float) + dy)[on]
            seqs.y_mask[:] = np.isfinite(seqs.y)
            return
        nxt = seqs.keys[["underlying_ticker"]].assign(trade_date=tdates)
        have = nxt.reset_index().merge(panel_days, how="inner")
        if not len(have):
            return
        idx = have["index"].to_numpy()
        iv, finite, _, _ = history.grid_window(have[["underlying_ticker", "trade_date"]], 1, "iv")
        quoted = finite[:, 0]
        grid = history.grid if history.grid is not None else history
        if "extrapolated" in grid.values:
            quoted &= history.grid_window(have[["underlying_ticker", "trade_date"]], 1, "extrapolated")[0][:, 0] == 0
        today = seqs.x_mask[idx, -1] > 0
        seqs.y[idx] = np.where(quoted, iv[:, 0], np.nan)
        seqs.y_mask[idx] = quoted & today

    # ------------------------------------------------------------------ ForecastModel hooks
    def _fit_config(self) -> FitConfig:
        return FitConfig(**{k: self.params[k] for k in _FIT_KEYS}, seed=self.seed)

    def _fit_change(self, X, dy, X_val, dy_val, history=None) -> None:
        seqs, sample, panel_days = self._samples(X, history, training=True)
        self._targets(seqs, sample, X, dy, history, panel_days)
        seqs = seqs.subset(seqs.y_mask.reshape(len(seqs), -1).any(axis=1))
        if not len(seqs):
            raise ValueError(f"{self.name}: no training sample has a target grid")
        dates = np.sort(seqs.keys["trade_date"].unique())
        n_val = round(float(self.params["val_frac"]) * len(dates)) if len(dates) >= 5 else 0
        train, val = seqs, None
        if n_val:
            start = dates[-n_val]
            d, t = seqs.keys["trade_date"], seqs.keys["target_date"]
            keep = ((d < start) & (t < start)).to_numpy()
            if keep.any():
                train, val = seqs.subset(keep), seqs.subset((d >= start).to_numpy())
        net_params = {k: v for k, v in self.params.items() if k in self.network.default_params()}
        self.net_model = self.network(net_params, fit_config=self._fit_config(), seed=self.seed)
        self.net_model.fit(train, val)

    def _predict_change(self, X: pd.DataFrame, history=None) -> np.ndarray:
        if self.net_model is None:
            raise RuntimeError(f"{self.name}: not fitted")
        seqs, sample, _ = self._samples(X, history)
        out = np.zeros(len(X))
        ok = sample >= 0
        self.last_fallback_rows = int((~ok).sum())
        if seqs is None or not ok.any():
            return out
        change = self.net_model.predict_change(seqs)
        tenors, deltas = self.net_model.shape["tenors"], self.net_model.shape["deltas"]
        rows = X.loc[ok]
        if "ticker" in X.columns:
            out[ok] = option_changes(change, sample[ok], rows, tenors, deltas)
        else:
            v = interpolate_grid(change, sample[ok], rows["tenor_days"].to_numpy(float),
                                 rows["delta"].to_numpy(float), tenors, deltas)
            out[ok] = np.where(np.isfinite(v), v, 0.0)
        return out

    def to_device(self, spec: str = "cuda") -> None:
        """Run inference on ``spec`` ("cuda", "cuda:N", "cpu"); an explicit CUDA device without CUDA is an error."""
        from b3quant_models.models.deep.engine import resolve_device

        if self.net_model is None or self.net_model.net is None:
            raise RuntimeError(f"{self.name}: not fitted")
        self.net_model.net.to(resolve_device(spec))

    def learning_curves(self) -> dict[str, list[float]]:
        h = self.net_model.history if self.net_model is not None else None
        if h is None:
            return {}
        return {"train_loss": list(h.train_loss), **({"val_loss": list(h.val_loss)} if h.val_loss else {})}

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        if self.net_model is not None:
            meta["network"] = {k: self.net_model.train_info.get(k) for k in (
                "best_epoch", "epochs_run", "fit_seconds", "device", "amp", "n_train", "n_val")}
            meta["grid"] = {k: self.net_model.shape[k] for k in ("tenors", "deltas", "extra_columns")}
        return meta

    def library_versions(self) -> dict[str, str]:
        return torch_versions()

    def _save(self, directory: Path) -> None:
        if self.net_model is None:
            raise RuntimeError(f"{self.name}: not fitted")
        self.net_model.save(directory / NETWORK_DIR)

    def _load(self, directory: Path) -> None:
        self.net_model = self.network.load(directory / NETWORK_DIR)


class LSTMModel(DeepGridModel):
    name: ClassVar[str] = "lstm"
    network: ClassVar[type[GridForecaster]] = LSTMGridForecaster


class GRUModel(DeepGridModel):
    name: ClassVar[str] = "gru"
    network: ClassVar[type[GridForecaster]] = GRUGridForecaster


class PINNModel(DeepGridModel):
    name: ClassVar[str] = "pinn"
    network: ClassVar[type[GridForecaster]] = PINNGridForecaster


class VAEModel(DeepGridModel):
    """The surface VAE's latent forecaster (``vae_latent``) as a ForecastModel; not registered by default
    (the wiring decides: ``register_model("vae", "b3quant_models.models.deep.forecast_model:VAEModel")``)."""

    name: ClassVar[str] = "vae"
    network: ClassVar[type[GridForecaster]] = VAELatentForecaster

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        return {"latent": trial.suggest_int("latent", 4, 10),
                "lr": trial.suggest_float("lr", 5e-4, 5e-3, log=True),
                "lookback": trial.suggest_int("lookback", 5, 20)}


class ViTModel(DeepGridModel):
    """The grid ViT (``vit_grid``) as a ForecastModel (grid-change head only through this interface); not
    registered by default, like ``VAEModel``."""

    name: ClassVar[str] = "vit"
    network: ClassVar[type[GridForecaster]] = ViTGridForecaster

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        return {"d_model": trial.suggest_categorical("d_model", [16, 32, 64]),
                "lr": trial.suggest_float("lr", 2e-4, 2e-3, log=True),
                "lookback": trial.suggest_int("lookback", 5, 20)}
