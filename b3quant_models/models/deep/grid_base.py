"""Base of the torch grid forecasters: last L grids (+ underlying features) -> next-day grid.

Like the tree models, a network predicts the *change* of each cell (in vol points) and adds it to
today's grid: the last layer starts at zero, so an untrained network is persistence. Inputs per
session: the grid's deviation from today's grid (vol points), its level around 30 % vol and its
quoted mask; the head also sees today's grid, today's mask and the underlying features standardised
on the training samples (NaN -> 0 after standardising). The loss is the MSE over target cells
(quoted today and tomorrow) in vol points², plus whatever ``extra_loss`` a subclass adds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from b3quant_models.models.deep.data import GridSequences
from b3quant_models.models.deep.engine import (
    FitConfig,
    FitHistory,
    fit_network,
    load_state,
    save_network,
    torch_versions,
)

LEVEL_CENTER, LEVEL_SCALE = 0.30, 10.0
VOL_PTS = 100.0


class GridForecaster:
    """Fit/predict/save/load on :class:`GridSequences`; subclasses implement ``build_net``."""

    name: ClassVar[str] = "grid_base"

    def __init__(self, params: dict[str, Any] | None = None, *, fit_config: FitConfig | None = None,
                 seed: int = 0) -> None:
        self.params: dict[str, Any] = {**self.default_params(), **(params or {})}
        self.fit_config = fit_config or FitConfig()
        self.fit_config.seed = int(seed)
        self.seed = int(seed)
        self.net: nn.Module | None = None
        self.shape: dict[str, Any] = {}
        self.scaler: dict[str, list[float]] = {}
        self.history: FitHistory | None = None
        self.train_info: dict[str, Any] = {}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"hidden": 64, "dropout": 0.0}

    # ------------------------------------------------------------------ subclass hooks
    def build_net(self) -> nn.Module:
        raise NotImplementedError

    def extra_loss(self, level_pred: torch.Tensor) -> torch.Tensor | None:
        """Added to the data loss (PINN physics terms); ``level_pred`` is the predicted IV grid (B, T, D)."""
        return None

    # ------------------------------------------------------------------ tensors
    def _set_shape(self, s: GridSequences) -> None:
        _, lookback, _nt, _nd = s.x.shape
        self.shape = {"lookback": int(lookback), "tenors": list(map(int, s.tenors)),
                      "deltas": list(map(float, s.deltas)), "extra_columns": list(s.extra_columns)}
        e = s.extra.astype(float)
        seen = np.isfinite(e)
        cnt = seen.sum(axis=0)
        mu = np.where(seen, e, 0.0).sum(axis=0) / np.maximum(cnt, 1)
        sd = np.sqrt(np.where(seen, (e - mu) ** 2, 0.0).sum(axis=0) / np.maximum(cnt, 1))
        self.scaler = {"mean": np.nan_to_num(mu).tolist(), "std": np.where(np.nan_to_num(sd) > 0, sd, 1.0).tolist()}
        if self.params.get("scale_output"):
            # per-cell RMS of the training changes (vol points): the net predicts changes in those units, so a
            # long-tenor cell that moves 0.3 pt a day and a wing that moves 3 pts start on the same footing
            dy = np.where(s.y_mask, VOL_PTS * (np.nan_to_num(s.y) - s.x[:, -1]), np.nan).reshape(len(s), -1)
            cnt = np.isfinite(dy).sum(axis=0)
            rms = np.sqrt(np.nansum(dy * dy, axis=0) / np.maximum(cnt, 1))
            fallback = float(np.median(rms[cnt > 10])) if (cnt > 10).any() else 1.0
            self.scaler["dy_scale"] = np.where(cnt > 10, np.maximum(rms, 0.05), fallback).tolist()

    def _check(self, s: GridSequences) -> None:
        if list(s.tenors) != self.shape["tenors"] or [round(d, 4) for d in s.deltas] != [
                round(d, 4) for d in self.shape["deltas"]]:
            raise ValueError(f"{self.name}: grid {s.tenors}×{s.deltas} differs from the trained "
                             f"{self.shape['tenors']}×{self.shape['deltas']}")
        if s.x.shape[1] != self.shape["lookback"]:
            raise ValueError(f"{self.name}: lookback {s.x.shape[1]} != trained {self.shape['lookback']}")
        if list(s.extra_columns) != self.shape["extra_columns"]:
            raise ValueError(f"{self.name}: extra columns {s.extra_columns} != trained {self.shape['extra_columns']}")

    def extra_features(self, s: GridSequences) -> np.ndarray:
        """Underlying features standardised on the training samples, NaN -> 0, clipped to ±6."""
        e = (s.extra.astype(float) - np.asarray(self.scaler["mean"])) / np.asarray(self.scaler["std"])
        return np.clip(np.nan_to_num(e), -6, 6)

    def tensors(self, s: GridSequences) -> dict[str, torch.Tensor]:
        x = s.x.astype(np.float32)
        last = x[:, -1]
        seq = np.concatenate([VOL_PTS * (x - last[:, None]), LEVEL_SCALE * (x - LEVEL_CENTER),
                              s.x_mask.astype(np.float32)], axis=2)  # (n, L, 3T, D)
        e = self.extra_features(s)
        head = np.concatenate([LEVEL_SCALE * (last - LEVEL_CENTER), s.x_mask[:, -1]], axis=1).reshape(len(s), -1)
        dy = np.where(s.y_mask, VOL_PTS * (np.nan_to_num(s.y) - last), 0.0)
        return {
            "seq": torch.as_tensor(seq.reshape(len(s), seq.shape[1], -1), dtype=torch.float32),
            "head": torch.as_tensor(np.concatenate([head, e], axis=1), dtype=torch.float32),
            "last": torch.as_tensor(last, dtype=torch.float32),
            "dy": torch.as_tensor(dy, dtype=torch.float32),
            "mask": torch.as_tensor(s.y_mask, dtype=torch.float32),
        }

    def n_inputs(self) -> tuple[int, int, int]:
        nt, nd = len(self.shape["tenors"]), len(self.shape["deltas"])
        return 3 * nt * nd, 2 * nt * nd + len(self.shape["extra_columns"]), nt * nd

    # ------------------------------------------------------------------ loss
    def data_loss(self, out: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
        err = (out.float() - b["dy"]) * b["mask"]
        return err.square().sum() / b["mask"].sum().clamp_min(1.0)

    def output(self, net: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The net's predicted change in vol points, (B, T, D) (rescaled per cell with ``scale_output``)."""
        out = net(b["seq"], b["head"]).view_as(b["dy"])
        if "dy_scale" in self.scaler:
            out = out * torch.as_tensor(self.scaler["dy_scale"], dtype=out.dtype, device=out.device).view_as(out[0])
        return out

    def loss(self, net: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.output(net, b)
        total = self.data_loss(out, b)
        extra = self.extra_loss(b["last"] + out.float() / VOL_PTS)
        return total if extra is None else total + extra

    # ------------------------------------------------------------------ public API
    def fit(self, train: GridSequences, val: GridSequences | None = None, *, log=None) -> Self:
        """Train on ``train``; with ``val`` early-stop on its loss and keep the best epoch."""
        if not len(train):
            raise ValueError(f"{self.name}: no training samples")
        self._set_shape(train)
        torch.manual_seed(self.seed)
        self.net = self.build_net()
        va = None
        if val is not None and len(val):
            self._check(val)
            va = self.tensors(val)
        self.net, self.history = fit_network(self.net, self.loss, self.tensors(train), va, self.fit_config, log=log)
        d = train.keys["trade_date"]
        self.train_info = {"n_train": len(train), "n_val": 0 if val is None else len(val),
                           "train_start": str(d.min().date()), "train_end": str(d.max().date()),
                           "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "best_epoch": self.history.best_epoch, "epochs_run": len(self.history.train_loss),
                           "fit_seconds": round(self.history.seconds, 3), "device": self.history.device,
                           "amp": self.history.amp}
        return self

    @torch.no_grad()
    def predict_change(self, s: GridSequences) -> np.ndarray:
        """Predicted change of every cell (IV units), shape (n, T, D)."""
        if self.net is None:
            raise RuntimeError(f"{self.name}: not fitted")
        self._check(s)
        t = self.tensors(s)
        self.net.eval()
        dev = next(self.net.parameters()).device  # CPU, or the GPU a server placed the network on
        t = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
        return self.output(self.net, t).double().cpu().numpy() / VOL_PTS

    def predict(self, s: GridSequences) -> np.ndarray:
        """Next-day IV grid (n, T, D) = today's grid + predicted change."""
        return s.last.astype(float) + self.predict_change(s)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "target": "next session's IV grid (tenor_days × delta), decimal IV", "target_mode": "change",
                "params": self.params, "fit_config": self.fit_config.to_dict(), "seed": self.seed, **self.shape,
                "scaler": self.scaler, **torch_versions(), **self.train_info,
                "history": self.history.to_dict() if self.history else None}

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        if self.net is None:
            raise RuntimeError(f"{self.name}: not fitted")
        save_network(d, self.net, self.metadata())
        return d

    @classmethod
    def load(cls, directory: str | Path) -> GridForecaster:
        state, meta = load_state(Path(directory))
        target = cls
        if meta["name"] != cls.name:
            from b3quant_models.models.deep import GRID_MODELS

            target = GRID_MODELS[meta["name"]]
        fc = FitConfig(**meta["fit_config"])
        m = target(meta["params"], fit_config=fc, seed=meta["seed"])
        m.shape = {k: meta[k] for k in ("lookback", "tenors", "deltas", "extra_columns")}
        m.scaler = meta["scaler"]
        m.train_info = {k: meta[k] for k in ("n_train", "n_val", "train_start", "train_end", "fitted_at", "best_epoch",
                                             "epochs_run", "fit_seconds", "device", "amp", "extra") if k in meta}
        if meta.get("history"):
            m.history = FitHistory(**meta["history"])
        m.net = m.build_net()
        m.net.load_state_dict(state)
        m.net.eval()
        return m
