"""Which BentoML model store promotion writes to and the service reads from.

``bentoml serve`` uses ``$BENTOML_HOME/models``; the pipeline defaults to the same place under the
data folder (``$B3Q_DATA_DIR/bentoml``) so that a promoted model is what the next ``bentoml serve``
(started with that BENTOML_HOME) picks up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def default_bentoml_home(data_dir: Path) -> Path:
    return Path(os.environ.get("BENTOML_HOME", data_dir / "bentoml"))


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
