"""Build large COTAHIST files for benchmarks by repeating the quote lines of the real B3 daily file.

A repeated real file keeps the true mix of markets, tickers and field values; the header and
trailer are rewritten so the result is a valid file of any size.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "b3-real" / "COTAHIST_D04012016.TXT"
RESULTS = ROOT / "benchmarks" / "results"


def build_large_file(target_mb: float, out: Path | None = None) -> Path:
    """A valid COTAHIST file of about ``target_mb`` MB made of the real file's quote records."""
    if not REAL.exists():
        raise SystemExit(f"benchmark needs the real B3 file at {REAL}")
    lines = REAL.read_bytes().split(b"\r\n")
    header, quotes = lines[0], [x for x in lines[1:] if x.startswith(b"01")]
    trailer = next(x for x in lines if x.startswith(b"99"))
    block = b"\r\n".join(quotes) + b"\r\n"
    reps = max(1, int(target_mb * 1e6 / len(block)))
    out = out or RESULTS / f"COTAHIST_BENCH_{int(target_mb)}MB.TXT"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.stat().st_size > reps * len(block):
        return out
    count = reps * len(quotes) + 2
    new_trailer = trailer[:31] + f"{count:011d}".encode() + trailer[42:]
    with open(out, "wb") as fh:
        fh.write(header + b"\r\n")
        for _ in range(reps):
            fh.write(block)
        fh.write(new_trailer + b"\r\n")
    return out
