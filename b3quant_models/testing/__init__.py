"""Generators and a loopback server for tests, examples and benchmarks: one place, in the library.

They ship with the package on purpose: a user adding a model or a data source wants the same fixtures
the project's own tests use (a learnable panel with a known optimum, a small market in the pipeline's
table contracts, synthetic surface quotes with a known truth, a loopback HTTP server that proves code
downloads nothing from the internet). Nothing else in the library imports this package, and it needs no
test framework. The sample market (``b3quant_models.sample_market``) is the full simulator behind the demo.

- ``synthetic_panel`` (``panel``): features/targets/truth where ``iv_next = iv + f(x) + noise``;
- ``toy_market`` (``features``): option_iv / iv_surface / underlying_quotes / surface-grid tables;
- ``synthetic_day`` (``surfaces``): one day of option quotes on SSVI-based true surfaces;
- ``LoopbackServer``, ``CannedResponse``, ``block_non_loopback`` (``http``): offline download tests.
"""

from b3quant_models.testing.features import toy_market
from b3quant_models.testing.panel import PANEL_FEATURES, synthetic_panel
from b3quant_models.testing.surfaces import synthetic_day

__all__ = ["PANEL_FEATURES", "synthetic_day", "synthetic_panel", "toy_market"]
