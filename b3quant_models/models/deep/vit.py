"""Vision transformer on the grid image: each (tenor, delta) cell is a patch whose channels are its last L
sessions (change vs today in vol points, level, quoted mask); a CLS token carries the underlying features.

Two heads: the next-day change of every cell (from its own token; zero-initialised, so an untrained net
is persistence like the other grid models) and, from the CLS token, the underlying's realized vol over the
next 21 sessions (standardised on the training samples) — the second target of arXiv 2511.03046, judged
against HAR-RV (``realized``). The RV loss is added with weight ``rv_weight`` where the target exists
(``GridSequences.with_realized_vol``); without it the ViT is a grid forecaster only.

Attention maps: ``attention_maps(seqs)`` returns the last layer's CLS → cell attention averaged over heads,
shape (n, T, D) — which cells of the surface the summary reads — and ``plot_attention`` saves its mean as
a heatmap (matplotlib imported on use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from b3quant_models.models.deep.data import GridSequences
from b3quant_models.models.deep.grid_base import VOL_PTS, GridForecaster


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.ln1(x)
        a, w = self.attn(h, h, h, need_weights=keep, average_attn_weights=True)
        x = x + a
        return x + self.mlp(self.ln2(x)), w


class GridViT(nn.Module):
    def __init__(self, n_cells: int, lookback: int, n_extra: int, d: int, heads: int, layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.n_cells, self.lookback = n_cells, lookback
        self.embed = nn.Linear(3 * lookback, d)
        self.pos = nn.Parameter(torch.zeros(1, n_cells, d))
        nn.init.normal_(self.pos, std=0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_extra = nn.Linear(max(n_extra, 1), d)
        self.n_extra = n_extra
        self.blocks = nn.ModuleList(_Block(d, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.cell_head = nn.Linear(d, 1)
        self.rv_head = nn.Linear(d, 1)
        for lin in (self.cell_head, self.rv_head):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.last_attention: torch.Tensor | None = None

    def both(self, seq: torch.Tensor, head: torch.Tensor, keep_attention: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
        b = seq.shape[0]
        tok = seq.view(b, self.lookback, 3, self.n_cells).permute(0, 3, 1, 2).reshape(b, self.n_cells, -1)
        x = self.embed(tok) + self.pos
        e = head[:, -self.n_extra:] if self.n_extra else head.new_zeros(b, 1)
        cls = self.cls.expand(b, -1, -1) + self.cls_extra(e)[:, None]
        x = torch.cat([cls, x], dim=1)
        w = None
        for i, blk in enumerate(self.blocks):
            x, w = blk(x, keep_attention and i == len(self.blocks) - 1)
        x = self.ln(x)
        if keep_attention:
            self.last_attention = w[:, 0, 1:].detach()  # CLS -> cells
        return self.cell_head(x[:, 1:]).squeeze(-1), self.rv_head(x[:, 0]).squeeze(-1)

    def forward(self, seq: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return self.both(seq, head)[0]


class ViTGridForecaster(GridForecaster):
    """``vit_grid``: see the module docstring."""

    name: ClassVar[str] = "vit_grid"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"d_model": 32, "heads": 4, "layers": 2, "dropout": 0.1, "rv_weight": 1.0, "scale_output": False}

    def _set_shape(self, s: GridSequences) -> None:
        super()._set_shape(s)
        rv = s.aux.get("rv_next")
        fin = rv[np.isfinite(rv)] if rv is not None else np.array([])
        if len(fin) > 1:
            self.scaler["rv_mean"], self.scaler["rv_std"] = float(fin.mean()), float(max(fin.std(), 1e-3))

    def tensors(self, s: GridSequences) -> dict[str, torch.Tensor]:
        t = super().tensors(s)
        if "rv_mean" in self.scaler and "rv_next" in s.aux:
            r = (s.aux["rv_next"] - self.scaler["rv_mean"]) / self.scaler["rv_std"]
            t["rv"] = torch.as_tensor(np.nan_to_num(r), dtype=torch.float32)
            t["rv_ok"] = torch.as_tensor(np.isfinite(r), dtype=torch.float32)
        return t

    def build_net(self) -> nn.Module:
        p = self.params
        return GridViT(len(self.shape["tenors"]) * len(self.shape["deltas"]), self.shape["lookback"],
                       len(self.shape["extra_columns"]), int(p["d_model"]), int(p["heads"]), int(p["layers"]),
                       float(p["dropout"]))

    def loss(self, net: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        grid, rv = net.both(b["seq"], b["head"])
        out = grid.view_as(b["dy"])
        if "dy_scale" in self.scaler:
            out = out * torch.as_tensor(self.scaler["dy_scale"], dtype=out.dtype, device=out.device).view_as(out[0])
        total = self.data_loss(out, b)
        wr = float(self.params["rv_weight"])
        if wr and "rv" in b:
            ok = b["rv_ok"]
            total = total + wr * ((rv.float() - b["rv"]) * ok).square().sum() / ok.sum().clamp_min(1.0)
        return total

    @torch.no_grad()
    def predict_rv(self, s: GridSequences) -> np.ndarray:
        """Next-21-session realized vol (annualised, decimal) per sample; NaN without a trained RV head."""
        if self.net is None:
            raise RuntimeError(f"{self.name}: not fitted")
        if "rv_mean" not in self.scaler:
            return np.full(len(s), np.nan)
        self._check(s)
        t = self.tensors(s)
        self.net.eval()
        _, rv = self.net.both(t["seq"], t["head"])
        return rv.double().numpy() * self.scaler["rv_std"] + self.scaler["rv_mean"]

    @torch.no_grad()
    def attention_maps(self, s: GridSequences) -> np.ndarray:
        """Last layer's CLS → cell attention (averaged over heads), (n, T, D); rows sum to ≤ 1 (the rest is
        the CLS attending to itself)."""
        if self.net is None:
            raise RuntimeError(f"{self.name}: not fitted")
        self._check(s)
        t = self.tensors(s)
        self.net.eval()
        self.net.both(t["seq"], t["head"], keep_attention=True)
        return self.net.last_attention.double().numpy().reshape(len(s), len(s.tenors), len(s.deltas))

    def plot_attention(self, s: GridSequences, path: str | Path, title: str | None = None) -> Path:
        """Mean attention map over ``s`` as a tenor × delta heatmap (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        att = self.attention_maps(s).mean(axis=0)
        fig, ax = plt.subplots(figsize=(4.8, 3.8))
        im = ax.imshow(att, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(s.deltas)), [f"{d:.2f}" for d in s.deltas])
        ax.set_yticks(range(len(s.tenors)), [str(t) for t in s.tenors])
        ax.set_xlabel("call delta")
        ax.set_ylabel("tenor (sessions)")
        ax.set_title(title or f"{self.name}: CLS attention (mean of {len(s)} samples)")
        for i in range(att.shape[0]):
            for j in range(att.shape[1]):
                ax.text(j, i, f"{att[i, j]:.2f}", ha="center", va="center", color="w", fontsize=7)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=110)
        plt.close(fig)
        return p


__all__ = ["VOL_PTS", "GridViT", "ViTGridForecaster"]
