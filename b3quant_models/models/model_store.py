"""The BentoML model store: the one library module that touches BentoML, and only inside its functions.

The library's rule is "no Dagster or BentoML import": importing this module imports neither, so the
library stays usable (and cheap to import) without a serving stack. Promotion needs BentoML's model
store, because that is what ``bentoml serve`` and ``bentoml build`` read; the functions below import
``bentoml`` when called. Which store: ``settings.bento_models_dir()`` (``$BENTOML_HOME/models``) unless a
caller points this process elsewhere with ``use_model_store``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_NAME = "b3quant_iv_forecaster"
MODEL_TAG = f"{MODEL_NAME}:latest"


@dataclass(frozen=True)
class StoredModel:
    """A model version in the store: its concrete tag and the saved ``ForecastModel`` directory inside it."""

    tag: str
    model_dir: Path


def saved_model_dir(root: Path) -> Path:
    """The saved ForecastModel directory inside a BentoML model (at its root or under ``model/``)."""
    return root if (root / "metadata.json").is_file() else root / "model"


def stored_model(tag: str = MODEL_TAG) -> StoredModel | None:
    """The store's model ``tag`` (default: what ``:latest`` resolves to), or None when there is none."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        m = bentoml.models.get(tag)
    except (NotFound, ValueError):
        return None
    return StoredModel(str(m.tag), saved_model_dir(Path(m.path)))


def promoted_tag() -> str | None:
    """The concrete tag ``b3quant_iv_forecaster:latest`` resolves to in the model store, if any."""
    found = stored_model()
    return found.tag if found else None


def promote(
    model_dir: str | Path, *, labels: dict[str, str] | None = None, metadata: dict[str, Any] | None = None
) -> str:
    """Copy a ``ForecastModel.save`` directory into the BentoML model store as ``b3quant_iv_forecaster``.

    ``metadata`` (run ids, metrics, features, data period) is stored beside the model's own facts.
    Returns the new tag; ``:latest`` then resolves to it, so the next service start serves it.
    """
    import bentoml

    src = Path(model_dir)
    meta = json.loads((src / "metadata.json").read_text())
    keep = {k: meta[k] for k in ("name", "format_version", "train_start", "train_end", "n_train") if k in meta}
    keep |= metadata or {}
    with bentoml.models.create(MODEL_NAME, labels=labels or {"model": str(meta.get("name"))}, metadata=keep) as m:
        shutil.copytree(src, Path(m.path) / "model", dirs_exist_ok=True)
        tag = str(m.tag)
    return tag


@contextlib.contextmanager
def use_model_store(models_dir: str | Path) -> Iterator[Path]:
    """Point this process's BentoML at ``models_dir`` for the duration (BentoML reads BENTOML_HOME
    once at import, so an environment variable alone cannot redirect an already-imported BentoML)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    path = Path(models_dir)
    path.mkdir(parents=True, exist_ok=True)
    BentoMLContainer.model_store.set(ModelStore(str(path)))
    try:
        yield path
    finally:
        BentoMLContainer.model_store.reset()
