"""Physics-informed grid forecaster: the GRU forecaster whose loss adds no-arbitrage penalties on the
*predicted* surface (butterfly: call prices convex and decreasing in strike, strikes ordered; calendar:
total variance non-decreasing in tenor at fixed k — see ``arbitrage``). With both weights 0 it is
exactly ``GRUGridForecaster`` (same seed, same weights), which is the comparison the docs report.

PDE residual (``pde_weight``): the forecast grid is made a continuous surface (cubic Hermite in k per
tenor, total variance linear in T, ``dense``) and the Dupire local variance ∂_T w / g is required to be
non-negative on a dense collocation set — relu(−g) and relu(−∂_T w) squared, between the nodes as well as
on them (arXiv 2209.10771 adds a PDE residual to its surface forecaster in the same spirit).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from b3quant_models.models.deep.arbitrage import arbitrage_penalty
from b3quant_models.models.deep.dense import dupire_residual
from b3quant_models.models.deep.recurrent import GRUGridForecaster


class PINNGridForecaster(GRUGridForecaster):
    name: ClassVar[str] = "pinn_grid"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {**super().default_params(), "butterfly_weight": 10.0, "calendar_weight": 10.0, "pde_weight": 10.0,
                "pde_points": 8}

    def extra_loss(self, level_pred: torch.Tensor) -> torch.Tensor | None:
        wb, wc = float(self.params["butterfly_weight"]), float(self.params["calendar_weight"])
        wp = float(self.params.get("pde_weight", 0.0))
        if wb == 0 and wc == 0 and wp == 0:
            return None
        iv = level_pred.float()
        total = iv.new_zeros(())
        if wb or wc:
            fly, cal = arbitrage_penalty(iv, self.shape["tenors"], self.shape["deltas"])
            total = total + wb * fly + wc * cal
        if wp:
            total = total + wp * dupire_residual(iv, self.shape["tenors"], self.shape["deltas"],
                                                 int(self.params.get("pde_points", 8)))
        return total
