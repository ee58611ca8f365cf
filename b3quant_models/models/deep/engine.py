"""Shared torch machinery of the deep models: device from config, seeds, a training loop with early
stopping, checkpoints and mixed precision on GPU, and save/load of a network with its settings.

torch is imported here and in the model modules only — ``import b3quant_models.models`` never loads it.
Determinism: on CPU a fixed seed gives bit-identical weights and predictions (single-threaded math
is not required: torch's CPU kernels used here are deterministic for a fixed thread count). On CUDA
``torch.use_deterministic_algorithms`` is *not* forced (some kernels have no deterministic variant);
results there are reproducible to rounding only.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "deep_config.json"


@dataclass
class FitConfig:
    """Training-loop settings (``quick()`` for the demo, defaults for real work).

    ``device``: "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N". ``amp``: mixed precision
    (bfloat16 autocast) — only ever on CUDA; "auto" turns it on there. ``checkpoint_dir``: the best and the
    last state are written there each epoch (resume-able), else kept in memory only. ``num_threads``
    defaults to 1: on the shared 2-core host two intra-op threads made a GRU fit ~40x slower (spin-waiting,
    as with the trees' OpenMP); ``None`` leaves torch's setting alone. ``warmup_epochs``: learning rate
    ramped linearly from lr/10 over that many epochs; ``lr_schedule`` "cosine" then decays it to lr/20 by
    ``max_epochs``; ``min_epochs``: early stopping cannot end the run before that many epochs (a noisy
    validation block otherwise stops a net whose first epoch happens to be best).
    """

    max_epochs: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 20
    min_delta: float = 1e-4
    grad_clip: float = 1.0
    device: str = "auto"
    amp: str = "auto"
    seed: int = 0
    num_threads: int | None = 1
    checkpoint_dir: str | None = None
    warmup_epochs: int = 0
    lr_schedule: str = "constant"
    min_epochs: int = 0

    @classmethod
    def quick(cls, **kw: Any) -> FitConfig:
        return cls(**{"max_epochs": 40, "patience": 8, **kw})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.inf
    seconds: float = 0.0
    device: str = "cpu"
    amp: bool = False
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(spec: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit "cuda" without CUDA is an error, not a fallback."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{spec}' requested but CUDA is not available")
    return dev


def use_amp(cfg: FitConfig, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    return cfg.amp in ("auto", "on", "true", True)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def batches(n: int, batch_size: int, gen: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for s in range(0, n, batch_size):
        yield order[s: s + batch_size]


def fit_network(
    net: nn.Module,
    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor] | None,
    cfg: FitConfig,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, FitHistory]:
    """Mini-batch AdamW with early stopping on ``val`` (the best epoch's weights are restored).

    ``train``/``val``: dicts of equally long tensors (on CPU; moved to the device here); ``loss_fn(net,
    batch)`` returns a scalar. Without ``val`` it runs ``max_epochs`` and keeps the last weights.
    """
    device = resolve_device(cfg.device)
    amp = use_amp(cfg, device)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    set_seed(cfg.seed)
    net.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    tr = {k: v.to(device) for k, v in train.items()}
    va = {k: v.to(device) for k, v in val.items()} if val else None
    n = len(next(iter(tr.values())))
    hist = FitHistory(device=str(device), amp=amp)
    best_state = copy.deepcopy(net.state_dict())
    ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    if ckpt:
        ckpt.mkdir(parents=True, exist_ok=True)
    bad = 0
    t0 = time.perf_counter()
    for epoch in range(cfg.max_epochs):
        for gr in opt.param_groups:
            gr["lr"] = cfg.lr * lr_factor(cfg, epoch)
        net.train()
        total, count = 0.0, 0
        for idx in batches(n, cfg.batch_size, gen):
            b = {k: v[idx.to(device)] for k, v in tr.items()}
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(net, b)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        hist.train_loss.append(total / max(count, 1))
        if va is not None:
            v = evaluate_loss(net, loss_fn, va, cfg.batch_size * 4, amp, device)
            hist.val_loss.append(v)
            if v < hist.best_val - cfg.min_delta:
                hist.best_val, hist.best_epoch, bad = v, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
                if ckpt:
                    torch.save(best_state, ckpt / "best.pt")
            else:
                bad += 1
        else:
            hist.best_epoch = epoch
        if ckpt:
            torch.save({"epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
                        "history": hist.to_dict()}, ckpt / "last.pt")
        if log and (epoch % 10 == 0):
            log(f"epoch {epoch}: train {hist.train_loss[-1]:.4f}" + (f" val {hist.val_loss[-1]:.4f}" if va else ""))
        if va is not None and bad >= cfg.patience and epoch + 1 >= cfg.min_epochs:
            hist.stopped_early = True
            break
    if va is not None:
        net.load_state_dict(best_state)
    hist.seconds = time.perf_counter() - t0
    net.to("cpu").eval()
    return net, hist


def lr_factor(cfg: FitConfig, epoch: int) -> float:
    """Multiplier of ``cfg.lr`` in ``epoch``: linear warm-up from 0.1, then constant or cosine to 0.05."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return 0.1 + 0.9 * epoch / cfg.warmup_epochs
    if cfg.lr_schedule == "cosine":
        span = max(cfg.max_epochs - cfg.warmup_epochs, 1)
        u = min(max(epoch - cfg.warmup_epochs, 0) / span, 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * u))
    if cfg.lr_schedule != "constant":
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
    return 1.0


@torch.no_grad()
def evaluate_loss(net, loss_fn, data: dict[str, torch.Tensor], batch_size: int, amp: bool,
                  device: torch.device) -> float:
    net.eval()
    n = len(next(iter(data.values())))
    total = 0.0
    for idx in batches(n, batch_size, None):
        b = {k: v[idx.to(device)] for k, v in data.items()}
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            total += float(loss_fn(net, b)) * len(idx)
    return total / max(n, 1)


def save_network(directory: Path, net: nn.Module, config: dict[str, Any]) -> None:
    """``weights.pt`` (state dict) + ``deep_config.json`` (architecture, scalers, settings) — no pickle of code."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=float))


def load_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    return state, json.loads((directory / CONFIG_FILE).read_text())


def torch_versions() -> dict[str, str]:
    return {"torch_version": torch.__version__}
