"""Dagster wiring for b3quant-ml (assets stay thin and call ``b3quant_models``)."""

import warnings

# Single-run backfills (BackfillPolicy) are beta in Dagster 1.13; we rely on them knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=Warning)
