"""Variational auto-encoder of the surface grid, and a grid forecaster that moves in its latent space.

Why a VAE: a day's 5 × 5 grid has far fewer degrees of freedom than cells (on the sample market two
state variables drive it; on real data level, skew and term structure explain most of it), so a latent of
4–10 numbers is a compact, smooth description of "a plausible surface". That gives three things:

* **fill-in**: the encoder sees the quoted cells and the mask (trained with extra random masking, a
  denoising VAE), the latent is then refined by a few gradient steps on the visible cells (projection on
  the decoder's manifold), and the decoder's values stand in for the missing cells;
* **anomaly score**: the RMSE (vol points) between a grid's quoted cells and their projection on the
  manifold — a surface far from every surface seen in training scores high (``surface_anomaly_scores``;
  the threshold is the training scores' 99th percentile, stored with the model);
* **latent forecasting** (``vae_latent``): the last L grids are encoded, a small network predicts the
  change of the latent from those latents and the underlying features, and the forecast is today's grid
  plus the decoded change D(z_t + Δz) − D(z_t) — so the decoder's reconstruction error does not enter the
  forecast, and the zero-initialised output starts at persistence like the other grid models.

Cells are standardised per cell on the training grids' quoted cells; losses are in vol points².
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from b3quant_models.models.deep.data import GridSequences
from b3quant_models.models.deep.engine import FitConfig, fit_network
from b3quant_models.models.deep.grid_base import VOL_PTS, GridForecaster

ANOMALY_QUANTILE = 0.99


class SurfaceVAE(nn.Module):
    """Encoder (standardised cells × mask, mask) -> (μ, log σ²); decoder z -> standardised cells."""

    def __init__(self, n_cells: int, latent: int, hidden: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(2 * n_cells, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, n_cells))
        self.latent = latent

    def encode(self, s: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(torch.cat([s * m, m], dim=-1))
        return h[..., : self.latent], h[..., self.latent:].clamp(-10, 5)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


class LatentGridNet(nn.Module):
    """The VAE plus the latent dynamics; ``forward(seq, head)`` returns the next-day change in vol points."""

    def __init__(self, n_cells: int, lookback: int, n_extra: int, latent: int, hidden: int, dyn_hidden: int,
                 cell_mean: np.ndarray, cell_std: np.ndarray) -> None:
        super().__init__()
        self.vae = SurfaceVAE(n_cells, latent, hidden)
        self.n_cells, self.lookback = n_cells, lookback
        n_in = latent * lookback + n_extra
        self.dyn = nn.Sequential(nn.Linear(n_in, dyn_hidden), nn.GELU(), nn.Linear(dyn_hidden, latent))
        nn.init.zeros_(self.dyn[-1].weight)
        nn.init.zeros_(self.dyn[-1].bias)
        self.register_buffer("cell_mean", torch.as_tensor(cell_mean, dtype=torch.float32))
        self.register_buffer("cell_std", torch.as_tensor(cell_std, dtype=torch.float32))

    def split(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return seq[..., : self.n_cells], seq[..., self.n_cells:]

    def forward(self, seq: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        s, m = self.split(seq)  # (B, L, C) each
        with torch.no_grad():
            mu, _ = self.vae.encode(s, m)
            mu = mu.float()
        z_last = mu[:, -1]
        lags = (mu[:, :-1] - z_last[:, None]).flatten(1)  # the path of the latent relative to today
        dz = self.dyn(torch.cat([z_last, lags, head], dim=1))
        change = self.vae.decode(z_last + dz) - self.vae.decode(z_last)
        return change * self.cell_std * VOL_PTS


class VAELatentForecaster(GridForecaster):
    """``vae_latent``: surface VAE (stage 1) + latent dynamics (stage 2) — see the module docstring."""

    name: ClassVar[str] = "vae_latent"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"latent": 6, "hidden": 64, "dyn_hidden": 32, "beta": 1e-3, "train_mask_frac": 0.3,
                "vae_epochs": 300, "vae_lr": 3e-3, "refine_steps": 60}

    # ------------------------------------------------------------------ data
    def _set_shape(self, s: GridSequences) -> None:
        super()._set_shape(s)
        g, m = s.x[:, -1].reshape(len(s), -1).astype(float), s.x_mask[:, -1].reshape(len(s), -1) > 0
        cnt = m.sum(axis=0)
        mu = np.where(m, g, 0.0).sum(axis=0) / np.maximum(cnt, 1)
        mu = np.where(cnt > 0, mu, np.nanmean(g))
        sd = np.sqrt(np.where(m, (g - mu) ** 2, 0.0).sum(axis=0) / np.maximum(cnt, 1))
        sd = np.where((cnt > 1) & (sd > 1e-4), sd, max(float(np.nanmedian(sd[cnt > 1])) if (cnt > 1).any()
                                                         else 0.01, 1e-3))
        self.scaler["cell_mean"], self.scaler["cell_std"] = mu.tolist(), sd.tolist()

    def _std(self, iv: np.ndarray) -> np.ndarray:
        flat = iv.reshape(*iv.shape[:-2], -1).astype(float)
        return (flat - np.asarray(self.scaler["cell_mean"])) / np.asarray(self.scaler["cell_std"])

    def _unstd(self, s: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return (s * np.asarray(self.scaler["cell_std"]) + np.asarray(self.scaler["cell_mean"])).reshape(shape)

    def tensors(self, s: GridSequences) -> dict[str, torch.Tensor]:
        t = super().tensors(s)
        st = np.nan_to_num(self._std(s.x))
        mk = s.x_mask.reshape(len(s), s.x.shape[1], -1).astype(np.float32)
        t["seq"] = torch.as_tensor(np.concatenate([st, mk], axis=-1), dtype=torch.float32)
        t["head"] = torch.as_tensor(self.extra_features(s), dtype=torch.float32)
        return t

    def n_inputs(self) -> tuple[int, int, int]:
        nt, nd = len(self.shape["tenors"]), len(self.shape["deltas"])
        return 2 * nt * nd, len(self.shape["extra_columns"]), nt * nd

    def build_net(self) -> nn.Module:
        p = self.params
        n_cells = len(self.shape["tenors"]) * len(self.shape["deltas"])
        return LatentGridNet(n_cells, self.shape["lookback"], len(self.shape["extra_columns"]), int(p["latent"]),
                             int(p["hidden"]), int(p["dyn_hidden"]), np.asarray(self.scaler["cell_mean"]),
                             np.asarray(self.scaler["cell_std"]))

    # ------------------------------------------------------------------ stage 1: the VAE
    def _vae_data(self, s: GridSequences) -> dict[str, torch.Tensor]:
        """Every distinct grid of the windows (each sample's last grid) with its quoted mask."""
        st = np.nan_to_num(self._std(s.x[:, -1]))
        mk = s.x_mask[:, -1].reshape(len(s), -1).astype(np.float32)
        keep = mk.sum(axis=1) > 0
        return {"s": torch.as_tensor(st[keep], dtype=torch.float32), "m": torch.as_tensor(mk[keep])}

    def vae_loss(self, net: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction of every quoted cell (vol points²) from the quoted cells minus a random share,
        plus β·KL; in eval mode no cell is dropped and the KL is left out (the validation score)."""
        vae, m = net.vae, b["m"]
        frac = float(self.params["train_mask_frac"])
        m_in = m * (torch.rand_like(m) >= frac).float() if net.training and frac > 0 else m
        mu, logvar = vae.encode(b["s"], m_in)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if net.training else mu
        err = (vae.decode(z).float() - b["s"]) * net.cell_std * VOL_PTS * m
        rec = err.square().sum() / m.sum().clamp_min(1.0)
        if not net.training:
            return rec
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1).mean()
        return rec + float(self.params["beta"]) * kl

    def fit(self, train: GridSequences, val: GridSequences | None = None, *, log=None) -> Self:
        if not len(train):
            raise ValueError(f"{self.name}: no training samples")
        self._set_shape(train)
        torch.manual_seed(self.seed)
        net = self.build_net()
        vcfg = FitConfig(**{**self.fit_config.to_dict(), "max_epochs": int(self.params["vae_epochs"]),
                            "lr": float(self.params["vae_lr"]), "checkpoint_dir": None,
                            "patience": max(self.fit_config.patience, 30)})
        if self.fit_config.max_epochs == 0:
            vcfg.max_epochs = 0
        vval = self._vae_data(val) if val is not None and len(val) else None
        net, vh = fit_network(net, self.vae_loss, self._vae_data(train), vval, vcfg, log=log)
        for p in net.vae.parameters():
            p.requires_grad_(False)
        self.net = net
        self.vae_history = vh  # stage 1's learning curve (not saved; the summary is in train_info)
        va = None
        if val is not None and len(val):
            self._check(val)
            va = self.tensors(val)
        self.net, self.history = fit_network(self.net, self.loss, self.tensors(train), va, self.fit_config,
                                             log=log)
        for p in self.net.vae.parameters():
            p.requires_grad_(True)
        d = train.keys["trade_date"]
        scores = self.anomaly_scores(train.x[:, -1], train.x_mask[:, -1] > 0)
        fin = scores[np.isfinite(scores)]
        self.train_info = {"n_train": len(train), "n_val": 0 if val is None else len(val),
                           "train_start": str(d.min().date()), "train_end": str(d.max().date()),
                           "best_epoch": self.history.best_epoch, "epochs_run": len(self.history.train_loss),
                           "fit_seconds": round(self.history.seconds + vh.seconds, 3), "device": self.history.device,
                           "amp": self.history.amp,
                           "extra": {"vae_best_epoch": vh.best_epoch, "vae_epochs_run": len(vh.train_loss),
                                     "vae_val_rmse_vol_pts": float(np.sqrt(vh.best_val)) if vval else None,
                                     "anomaly_threshold": float(np.quantile(fin, ANOMALY_QUANTILE)) if len(fin)
                                     else float("nan")}}
        return self

    # ------------------------------------------------------------------ the manifold
    def project(self, iv: np.ndarray, mask: np.ndarray, steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Closest decoded surface to the quoted cells: encoder's μ, refined by ``steps`` Adam steps on the
        visible cells' squared error (+ a weak standard-normal prior). Returns (decoded grids (n, T, D) in
        IV, latents (n, latent))."""
        if self.net is None:
            raise RuntimeError(f"{self.name}: not fitted")
        shape = iv.shape
        s = torch.as_tensor(np.nan_to_num(self._std(iv)), dtype=torch.float32)
        m = torch.as_tensor(mask.reshape(len(iv), -1).astype(np.float32))
        vae = self.net.vae.eval()
        with torch.no_grad():
            z0, _ = vae.encode(s, m)
        z = z0.clone().requires_grad_(True)
        n_steps = int(self.params["refine_steps"] if steps is None else steps)
        if n_steps:
            opt = torch.optim.Adam([z], lr=0.05)
            for _ in range(n_steps):
                opt.zero_grad()
                err = (vae.decode(z) - s) * m
                (err.square().sum(dim=1).sum() + 1e-3 * z.square().sum()).backward()
                opt.step()
        with torch.no_grad():
            dec = vae.decode(z).double().numpy()
        return self._unstd(dec, shape), z.detach().double().numpy()

    def fill_masked(self, iv: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Grids with the cells where ``mask`` is False replaced by the VAE's values (quoted cells kept)."""
        dec, _ = self.project(iv, mask)
        return np.where(mask, iv, dec)

    def anomaly_scores(self, iv: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Distance (RMSE over quoted cells, vol points) of each grid from the learned manifold; NaN when a
        grid has no quoted cell."""
        dec, _ = self.project(iv, mask)
        m = mask.reshape(len(iv), -1)
        e = np.where(m, (dec - np.nan_to_num(iv)).reshape(len(iv), -1), 0.0)
        cnt = m.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, VOL_PTS * np.sqrt((e * e).sum(axis=1) / cnt), np.nan)

    @property
    def anomaly_threshold(self) -> float:
        return float(self.train_info.get("extra", {}).get("anomaly_threshold", float("nan")))


def surface_anomaly_scores(model: VAELatentForecaster, surface_grid) -> Any:
    """Per (trade_date, underlying_ticker) of a ``surface_grid_points`` frame: the grid's distance from the
    VAE's manifold (``anomaly_score``, vol points), the model's threshold and ``anomalous`` = score above it.
    What an asset check reads (the Dagster side decides severity); grids without a quoted cell score NaN."""
    import pandas as pd

    from b3quant_models.models.deep.data import grid_cube

    cube = grid_cube(surface_grid, model.shape["tenors"], model.shape["deltas"])
    frames = []
    for und, (dates, iv, quoted) in cube.items():
        sc = model.anomaly_scores(np.nan_to_num(iv, nan=0.3), quoted)
        frames.append(pd.DataFrame({"trade_date": dates, "underlying_ticker": und, "anomaly_score": sc,
                                    "quoted_cells": quoted.reshape(len(dates), -1).sum(axis=1)}))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["trade_date", "underlying_ticker", "anomaly_score", "quoted_cells"])
    out["threshold"] = model.anomaly_threshold
    out["anomalous"] = out["anomaly_score"] > out["threshold"]
    return out
