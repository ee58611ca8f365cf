"""Write a benchmark's measured text into its own section of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(section: str, text: str, docs: Path = DOCS) -> None:
    """Replace the body of ``section`` (a '## ' heading) up to the next heading; others untouched."""
    doc = docs.read_text()
    pattern = re.compile(rf"({re.escape(section)}\n\n)(.*?)(\n## |\Z)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"section {section!r} not found in {docs}")
    docs.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(3), doc, count=1))
    print(f"\nwrote {docs}")
