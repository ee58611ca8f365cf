"""Declarative automation: downstream partitioned assets follow when their upstream partitions update.

The conditions are attached here, in one place, to assets the other domains define (``map_resolved_asset_specs``),
so a domain's asset module says what an asset computes and this module says when it runs by itself. They are
evaluated by Dagster's ``default_automation_condition_sensor``, which is off until switched on in the UI
(Automation tab), like the other schedules and sensors.
"""

import warnings

import dagster as dg

# The ingestion roots (raw_quotes and its quarantine) are started by the daily schedule, the landing sensor or
# a backfill; everything partitioned below them, through the features, follows. (The backtests also read the
# weekly models' predictions, so they are left to their own runs.)
FOLLOWERS = (
    dg.AssetSelection.groups("ingestion", "analytics") - dg.AssetSelection.assets("raw_quotes", "cotahist_quarantine")
) | dg.AssetSelection.assets("option_features")

# eager(): the latest partition is requested once any parent partition it reads was updated and none is
# missing or in progress; a blocking check failing upstream (the pandera schemas) holds it back.
FOLLOW_UPSTREAM = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, upstream checks passed")


def with_automation(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with :data:`FOLLOW_UPSTREAM` on every asset of :data:`FOLLOWERS`."""
    with warnings.catch_warnings():  # "preview" in 1.13; tests/test_ops.py checks the result on every release
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_resolved_asset_specs(
            func=lambda spec: spec.replace_attributes(automation_condition=FOLLOW_UPSTREAM), selection=FOLLOWERS
        )
