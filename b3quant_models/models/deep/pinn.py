"""Physics-informed grid forecaster: the GRU forecaster whose loss adds no-arbitrage penalties on the
*predicted* surface (butterfly: call prices convex and decreasing in strike, strikes ordered; calendar:
total variance non-decreasing in tenor at fixed k — see ``arbitrage``). With both weights 0 it is
exactly ``GRUGridForecaster`` (same seed, same weights), which is the comparison the docs report.

Not done: the PDE residual term of arXiv 2209.10771 (a Black–Scholes/Dupire residual on a continuous
surface); on a 5 × 5 grid of a next-day forecast it has no natural collocation points, and Dupire's
local variance being positive is what the two penalties already enforce at the nodes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from b3quant_models.models.deep.arbitrage import arbitrage_penalty
from b3quant_models.models.deep.recurrent import GRUGridForecaster


class PINNGridForecaster(GRUGridForecaster):
    name: ClassVar[str] = "pinn_grid"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {**super().default_params(), "butterfly_weight": 10.0, "calendar_weight": 10.0}

    def extra_loss(self, level_pred: torch.Tensor) -> torch.Tensor | None:
        wb, wc = float(self.params["butterfly_weight"]), float(self.params["calendar_weight"])
        if wb == 0 and wc == 0:
            return None
        fly, cal = arbitrage_penalty(level_pred.float(), self.shape["tenors"], self.shape["deltas"])
        return wb * fly + wc * cal
