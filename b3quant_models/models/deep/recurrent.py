"""LSTM and GRU grid forecasters: the last L grids run through a recurrent layer; its final state,
today's grid and the underlying features go through a small MLP to the next-day change of every cell."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from b3quant_models.models.deep.grid_base import GridForecaster


class RecurrentGridNet(nn.Module):
    def __init__(self, cell: str, n_seq: int, n_head: int, n_out: int, hidden: int, layers: int = 1,
                 dropout: float = 0.0, linear_skip: bool = False) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(n_seq, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.mlp = nn.Sequential(nn.Linear(hidden + n_head, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, n_out)
        nn.init.zeros_(self.out.weight)  # start at persistence
        nn.init.zeros_(self.out.bias)
        # a linear path from today's grid and the features: mean reversion of a level is linear in it
        self.skip = nn.Linear(n_head, n_out) if linear_skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(self, seq: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(seq)
        out = self.out(self.mlp(torch.cat([h[:, -1], head], dim=1)))
        return out if self.skip is None else out + self.skip(head)


class _RecurrentForecaster(GridForecaster):
    cell: ClassVar[str] = "gru"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"hidden": 64, "layers": 1, "dropout": 0.1, "linear_skip": False, "scale_output": False}

    def build_net(self) -> nn.Module:
        n_seq, n_head, n_out = self.n_inputs()
        p = self.params
        return RecurrentGridNet(self.cell, n_seq, n_head, n_out, int(p["hidden"]), int(p["layers"]),
                                float(p["dropout"]), bool(p.get("linear_skip", False)))


class LSTMGridForecaster(_RecurrentForecaster):
    name: ClassVar[str] = "lstm_grid"
    cell: ClassVar[str] = "lstm"


class GRUGridForecaster(_RecurrentForecaster):
    name: ClassVar[str] = "gru_grid"
    cell: ClassVar[str] = "gru"
