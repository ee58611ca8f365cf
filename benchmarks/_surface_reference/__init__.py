"""Frozen copy of the surface fitter as of commit 40f5066 (scipy least_squares repair and SSVI, scipy
Nelder–Mead raw fits), importable by benchmarks/bench_surface.py only, so the speed-up is measured against
the previous implementation in the same run. Not used by the library; do not edit.
"""

from _surface_reference.fit import fit_surfaces

__all__ = ["fit_surfaces"]
