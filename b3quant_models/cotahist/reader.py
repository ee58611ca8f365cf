"""Fast, exact COTAHIST reader.

Why not ``pandas.read_fwf``: B3's records are fixed 245-byte lines, so a chunk of the file can be
viewed as an ``(n, 245)`` uint8 matrix and every field decoded with a handful of vectorized numpy
operations — no per-line Python work. Strings are decoded once per *distinct* value (tickers,
ISINs and names repeat heavily) and broadcast back, which keeps both time and memory low.

Integrity is checked, not assumed: the header must open the file, the trailer must close it and
its record count must equal the lines read. Malformed quote lines never abort a read; they are
returned in a quarantine frame with file, line number, raw text and the reason.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import io
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from numba import njit, prange

from .layout import (
    ENCODING,
    HEADER_GENERATED,
    QUOTE_COLUMNS,
    QUOTE_FIELDS,
    RECORD_LENGTH,
    TRAILER_COUNT,
    Field,
)

QUARANTINE_COLUMNS = ("file", "line_number", "record_type", "reason", "raw")
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024  # ~270k records: bounded memory for 1 GB yearly files


class CotahistError(ValueError):
    """A COTAHIST file that cannot be trusted as a whole (bad header, trailer, truncation).

    When the trailer's record count disagrees with the records read, ``expected`` and ``found`` hold
    the two counts (header and trailer included); otherwise they are None.
    """

    def __init__(self, message: str, *, expected: int | None = None, found: int | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.found = found


@dataclass
class CotahistRead:
    """Everything read from one file: quotes, quarantined lines and the integrity facts."""

    file: str
    quotes: pd.DataFrame
    quarantine: pd.DataFrame
    generated_on: dt.date | None
    trailer_count: int
    records_read: int  # header + quotes + quarantined + trailer


@dataclass
class _Batch:
    quotes: pd.DataFrame
    quarantine: pd.DataFrame


@dataclass
class _StreamState:
    """Carried across chunks: line numbering and the header/trailer facts."""

    name: str
    lines_seen: int = 0
    header: bytes | None = None
    trailer: bytes | None = None
    trailer_lines: list[int] = field(default_factory=list)
    last_record_line: int = 0  # last non-blank line (blank lines / DOS EOF after the trailer are ignored)
    head: bytes = b""  # the file's first bytes: say *why* the header is not one (BOM, CR-only line ends)


# --------------------------------------------------------------------------------------------
# Opening files (TXT or ZIP) as a byte stream


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, str]]:
    """The file's byte stream (the single member of a ZIP, or the TXT) and a display name."""
    if not path.exists():
        raise FileNotFoundError(f"COTAHIST file not found: {path}")
    if path.is_dir():
        raise CotahistError(f"{path}: is a directory, not a COTAHIST file (.TXT or .ZIP)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise CotahistError(f"{path}: expected one COTAHIST file inside the ZIP, found {members}")
            with zf.open(members[0]) as stream:
                yield stream, f"{path.name}:{members[0]}"
        return
    if path.suffix.lower() == ".zip":
        raise CotahistError(f"{path}: not a valid ZIP archive (truncated or corrupted download?)")
    with open(path, "rb") as stream:
        yield stream, path.name


def _iter_line_chunks(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes | memoryview]:
    """Yield chunks that end on a line boundary (the last one may lack a final newline).

    Chunks are zero-copy views of the block read: slicing ``bytes`` would copy tens of MB per chunk.
    """
    rest = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        if rest:
            block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        rest = block[cut + 1 :]
        yield memoryview(block)[: cut + 1]
    if rest:
        yield rest


# --------------------------------------------------------------------------------------------
# Chunk → record matrix


def _split_records(chunk: bytes) -> tuple[np.ndarray, np.ndarray, list[tuple[int, bytes]], int]:
    """Split a chunk into a ``(n, 245)`` matrix of well-formed lines and a list of bad lines.

    Returns (matrix, line index of each matrix row, [(line index, raw line)], total lines), line
    indexes being 0-based within the chunk so line numbers stay exact.
    """
    # Fast path: every line is 245 bytes + CRLF (B3's files) or + LF.
    for stride in (RECORD_LENGTH + 2, RECORD_LENGTH + 1):
        if len(chunk) % stride == 0 and len(chunk) >= stride:
            arr = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, stride)
            ends = arr[:, RECORD_LENGTH:]
            ok = (ends[:, -1] == 10).all() and (stride == RECORD_LENGTH + 1 or (ends[:, 0] == 13).all())
            if ok:
                return arr[:, :RECORD_LENGTH], np.arange(arr.shape[0], dtype=np.int64), [], arr.shape[0]
    # General path: mixed endings, odd lengths, a missing final newline.
    lines = bytes(chunk).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    good_idx: list[int] = []
    good: list[bytes] = []
    bad: list[tuple[int, bytes]] = []
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) < RECORD_LENGTH and _trimmed_header_or_trailer(line):
            # Header and trailer are space-padded to 245 bytes; a tool that strips trailing blanks
            # (editors, some copies) leaves them short with nothing lost.
            line = line.ljust(RECORD_LENGTH)
        if len(line) == RECORD_LENGTH:
            good_idx.append(i)
            good.append(line)
        else:
            bad.append((i, line))
    mat = np.frombuffer(b"".join(good), dtype=np.uint8).reshape(-1, RECORD_LENGTH)
    return mat, np.asarray(good_idx, dtype=np.int64), bad, len(lines)


def _trimmed_header_or_trailer(line: bytes) -> bool:
    """A short header or trailer whose fixed fields are all in place (``COTAHIST.AAAA``, the generation date,
    the trailer's record count): only trailing blanks are missing. A line short for another reason (a
    character lost in the middle) is not padded, so the reader says how long it is."""
    named = line[2:11] == b"COTAHIST." and line[11:15].isdigit() and line[23:31].isdigit()
    if line[:2] == b"00":
        return named
    return line[:2] == b"99" and named and line[31:42].isdigit()


# --------------------------------------------------------------------------------------------
# Field decoding


NAT = np.iinfo(np.int64).min  # datetime64 NaT as int64
_NS_PER_DAY = 86_400 * 1_000_000_000


@njit(cache=True, nogil=True)
def _days_from_civil(y, m, d):  # pragma: no cover - compiled
    """Days since 1970-01-01 (H. Hinnant's algorithm): exact for the proleptic Gregorian calendar."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True, parallel=True)
def _parse_digit_fields(mat, starts, ends, kinds, out, ok):  # pragma: no cover - compiled
    """Decode every unsigned numeric field of every row in one pass (~10x a numpy Horner loop).

    kinds: 0 integer, 1 date yyyymmdd → ns since epoch, 2 date that may be 99991231 (→ NaT).
    """
    n = mat.shape[0]
    mdays = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    for i in prange(n):
        for k in range(starts.shape[0]):
            v = np.int64(0)
            bad = np.uint8(0)
            for j in range(starts[k], ends[k]):
                c = mat[i, j] - np.uint8(48)  # wraps below '0', so one comparison checks both sides
                bad |= c > 9
                v = v * 10 + np.int64(c)
            good = bad == 0
            if kinds[k] > 0 and good:
                if kinds[k] == 2 and v == 99991231:
                    v = NAT
                else:
                    y, m, d = v // 10000, (v // 100) % 100, v % 100
                    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
                    if y < 1900 or y > 2200 or m < 1 or m > 12 or d < 1:
                        good = False
                    elif d > mdays[m - 1] + (1 if (m == 2 and leap) else 0):
                        good = False
                    v = _days_from_civil(y, m, d) * _NS_PER_DAY if good else NAT
            elif kinds[k] > 0:
                v = NAT
            out[i, k] = v
            ok[i, k] = good


@njit(cache=True, nogil=True, parallel=True)
def _pack_words(mat, start, width, words):  # pragma: no cover - compiled
    """Pack a text field's bytes into little-endian uint64 words (zero padded) for hashing."""
    for i in prange(mat.shape[0]):
        for w in range(words.shape[1]):
            acc = np.uint64(0)
            for b in range(8):
                j = w * 8 + b
                if j < width:
                    acc |= np.uint64(mat[i, start + j]) << np.uint64(8 * b)
            words[i, w] = acc


@njit(cache=True, nogil=True, parallel=True)
def _hash_spans(mat, starts, ends, out):  # pragma: no cover - compiled
    """FNV-1a 64 of the given byte spans of each row (the record's text: one key per instrument)."""
    for i in prange(mat.shape[0]):
        h = np.uint64(14695981039346656037)
        for s in range(starts.shape[0]):
            for j in range(starts[s], ends[s]):
                h = (h ^ np.uint64(mat[i, j])) * np.uint64(1099511628211)
        out[i] = h


@njit(cache=True, nogil=True, parallel=True)
def _same_spans(mat, first, codes, starts, ends):  # pragma: no cover - compiled
    """True when every row's spans equal those of its group's first row (no hash collision)."""
    n = mat.shape[0]
    ok = np.ones(n, dtype=np.bool_)
    for i in prange(n):
        r = first[codes[i]]
        for s in range(starts.shape[0]):
            for j in range(starts[s], ends[s]):
                if mat[i, j] != mat[r, j]:
                    ok[i] = False
    return ok.all()


def _numeric_fields() -> tuple[list[Field], np.ndarray, np.ndarray, np.ndarray]:
    fs = [f for f in QUOTE_FIELDS if f.kind != "str"]
    kinds = [2 if f.name == "expiry" else 1 if f.kind == "date" else 0 for f in fs]
    return (
        fs,
        np.array([f.start for f in fs], np.int64),
        np.array([f.end for f in fs], np.int64),
        np.array(kinds, np.int64),
    )


_NUMERIC, _NUM_STARTS, _NUM_ENDS, _NUM_KINDS = _numeric_fields()
_TEXT = [f for f in QUOTE_FIELDS if f.kind in ("str", "code")]


def _strings(mat: np.ndarray, f: Field) -> np.ndarray:
    """Decode a text field once per distinct value (latin-1, stripped) → object array.

    Distinct values are found by hashing the field's bytes as 8-byte integers (pandas.factorize),
    which is several times faster than sorting fixed-width byte strings.
    """
    n, w = mat.shape[0], f.width
    padded = -(-w // 8) * 8
    words = np.empty((n, padded // 8), dtype=np.uint64)
    if n:
        _pack_words(mat, f.start, w, words)
    codes, _ = pd.factorize(words[:, 0])
    for j in range(1, words.shape[1]):
        c2, u2 = pd.factorize(words[:, j])
        codes, _ = pd.factorize(codes * len(u2) + c2)
    # Codes are numbered in order of first appearance, so first occurrences are rows for 0, 1, ...
    first = pd.Series(codes).drop_duplicates().index.to_numpy()
    decoded = np.array([bytes(mat[i, f.start : f.end]).decode(ENCODING).strip() for i in first], dtype=object)
    return decoded[codes]


def _text_fields(mat: np.ndarray, fields: list[Field]) -> dict[str, np.ndarray]:
    """Decode all text fields at once, keyed by the row's whole text (one key per instrument).

    A day has ~2k instruments for ~2k rows and a year ~50k for ~4M rows, so hashing the text
    bytes once and decoding each field only for the first row of each key beats per-field work.
    The grouping is verified byte for byte; on a (64-bit) hash collision the exact per-field
    path is used instead.
    """
    n = mat.shape[0]
    starts = np.array([f.start for f in fields], np.int64)
    ends = np.array([f.end for f in fields], np.int64)
    if n == 0:
        return {f.name: np.array([], dtype=object) for f in fields}
    h = np.empty(n, dtype=np.uint64)
    _hash_spans(mat, starts, ends, h)
    codes, _ = pd.factorize(h)
    first = pd.Series(codes).drop_duplicates().index.to_numpy()
    if not _same_spans(mat, first, codes, starts, ends):
        return {f.name: _strings(mat, f) for f in fields}
    rows = mat[first]
    out = {}
    for f in fields:
        # Per field, decode each distinct value once (a year has ~50k instruments but ~10 currencies).
        raw = np.ascontiguousarray(rows[:, f.start : f.end]).view(f"V{f.width}").ravel()
        uniq, inv = np.unique(raw, return_inverse=True)
        text = np.array([u.tobytes().decode(ENCODING).strip() for u in uniq], dtype=object)
        out[f.name] = text[inv.ravel()][codes]
    return out


def _decode_quotes(mat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Decode all quote fields. Returns (columns, valid-row mask, reason per invalid row)."""
    n = mat.shape[0]
    cols: dict[str, np.ndarray] = {}
    raw = np.empty((n, len(_NUMERIC)), dtype=np.int64)
    ok = np.empty((n, len(_NUMERIC)), dtype=np.bool_)
    if n:
        _parse_digit_fields(mat, _NUM_STARTS, _NUM_ENDS, _NUM_KINDS, raw, ok)
    bad_masks: dict[str, np.ndarray] = {}
    ints: dict[str, np.ndarray] = {}
    for k, f in enumerate(_NUMERIC):
        v, good = raw[:, k], ok[:, k]
        if f.kind == "date":
            cols[f.name] = v.view("datetime64[ns]")
        elif f.kind != "code":
            ints[f.name] = v
        if not good.all():
            bad_masks[f.b3_name] = ~good
    cols.update(_text_fields(mat, _TEXT))
    zero_qf = ints["quote_factor"] == 0
    if zero_qf.any():
        bad_masks["FATCOT"] = bad_masks.get("FATCOT", np.zeros(n, bool)) | zero_qf
    unit = 100.0 * np.where(zero_qf, 1, ints["quote_factor"])
    for f in _NUMERIC:
        if f.name not in ints:
            continue
        v = ints[f.name]
        if f.kind == "price":
            cols[f.name] = v / unit  # per-unit price: field / 100 / FATCOT
        elif f.kind in ("money", "points"):
            cols[f.name] = v / float(10**f.decimals)
        else:
            cols[f.name] = v
    valid = np.ones(n, dtype=bool)
    for m in bad_masks.values():
        valid &= ~m
    return cols, valid, _reasons(mat, bad_masks, ~valid)


def _reasons(mat: np.ndarray, bad_masks: dict[str, np.ndarray], invalid: np.ndarray) -> list[str]:
    """Human-readable reason for each invalid row (only invalid rows, in order)."""
    by_name = {f.b3_name: f for f in QUOTE_FIELDS}
    out = []
    for i in np.flatnonzero(invalid):
        parts = []
        for b3_name, mask in bad_masks.items():
            if mask[i]:
                f = by_name[b3_name]
                raw = bytes(mat[i, f.start : f.end]).decode(ENCODING)
                what = "an impossible date" if f.kind == "date" else "digits"
                if b3_name == "FATCOT" and raw.strip("0") == "":
                    what = "a positive quote factor"
                parts.append(f"{b3_name} (cols {f.start + 1}-{f.end}) = {raw!r}, expected {what}")
        out.append("; ".join(parts))
    return out


def _empty_quotes() -> pd.DataFrame:
    mat = np.zeros((0, RECORD_LENGTH), dtype=np.uint8)
    cols, _, _ = _decode_quotes(mat)
    return pd.DataFrame({c: cols[c] for c in QUOTE_COLUMNS})


def _quarantine_frame(rows: list[tuple[str, int, str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS))
    return df.astype({"line_number": "int64"})


# --------------------------------------------------------------------------------------------
# Chunk processing


def _process_chunk(chunk: bytes, st: _StreamState) -> _Batch:
    if st.lines_seen == 0 and not st.head:
        st.head = bytes(chunk[:2 * RECORD_LENGTH])
    mat, line_idx, bad_lines, total = _split_records(chunk)
    first_line = st.lines_seen + 1
    q_rows: list[tuple[str, int, str, str, str]] = []
    rtype = mat[:, :2].copy().view("S2").ravel() if mat.size else np.array([], dtype="S2")
    for i in np.flatnonzero(rtype == b"99"):
        st.trailer = bytes(mat[i])
        st.trailer_lines.append(first_line + int(line_idx[i]))
    if mat.shape[0]:
        st.last_record_line = first_line + int(line_idx[-1])
    for i, raw in bad_lines:
        text = raw.rstrip(b"\r").decode(ENCODING)
        line_no = first_line + i
        if text.strip(" \x1a") == "":
            if st.trailer_lines and line_no > st.trailer_lines[-1]:
                continue  # blank lines / DOS EOF marker after the trailer: not records
            reason = "blank line inside the file"
        else:
            st.last_record_line = max(st.last_record_line, line_no)
            reason = f"record length {len(raw)}, expected {RECORD_LENGTH}"
        q_rows.append((st.name, line_no, text[:2], reason, text))

    is_quote = rtype == b"01"
    # Header: must be the very first line of the file.
    for i in np.flatnonzero(rtype == b"00"):
        line_no = first_line + int(line_idx[i])
        if line_no == 1 and st.header is None:
            st.header = bytes(mat[i])
        else:
            q_rows.append((st.name, line_no, "00", "header record not on the first line", _txt(mat[i])))
    other = ~is_quote & (rtype != b"00") & (rtype != b"99")
    for i in np.flatnonzero(other):
        q_rows.append(
            (
                st.name,
                first_line + int(line_idx[i]),
                _txt(mat[i])[:2],
                "unknown record type (TIPREG), expected 00, 01 or 99",
                _txt(mat[i]),
            )
        )

    qmat = mat[is_quote]
    qline = line_idx[is_quote]
    cols, valid, reasons = _decode_quotes(qmat)
    for j, reason in zip(np.flatnonzero(~valid), reasons, strict=True):
        q_rows.append((st.name, first_line + int(qline[j]), "01", reason, _txt(qmat[j])))
    # copy=False also skips consolidating same-dtype columns into 2-D blocks (a full copy of the frame).
    quotes = pd.DataFrame({c: (cols[c][valid] if not valid.all() else cols[c]) for c in QUOTE_COLUMNS}, copy=False)
    st.lines_seen += total
    quarantine = _quarantine_frame(sorted(q_rows, key=lambda r: r[1]))
    return _Batch(quotes, quarantine)


def _txt(row: np.ndarray) -> str:
    return bytes(row).decode(ENCODING)


def _finish(st: _StreamState, path: Path) -> tuple[dt.date | None, int]:
    """Header/trailer integrity after the last chunk; raises ``CotahistError``."""
    if st.lines_seen == 0:
        raise CotahistError(f"{path}: file is empty")
    if st.header is None or not st.header[2:10] == b"COTAHIST":
        raise CotahistError(f"{path}: {_not_a_header(st.head)}")
    if st.trailer is None:
        raise CotahistError(
            f"{path}: no trailer record ('99') — the file is truncated ({st.lines_seen} lines read)"
        )
    trailer_line = st.trailer_lines[-1]
    if len(st.trailer_lines) > 1 or trailer_line != max(st.last_record_line, trailer_line):
        raise CotahistError(
            f"{path}: the trailer record must be the last record and appear once; found at lines "
            f"{st.trailer_lines}, last record on line {st.last_record_line}"
        )
    count_txt = st.trailer[TRAILER_COUNT].decode(ENCODING)
    if not count_txt.isdigit():
        raise CotahistError(f"{path}: trailer record count {count_txt!r} is not a number")
    expected = int(count_txt)
    if expected != trailer_line:
        raise CotahistError(
            f"{path}: truncated or corrupted file — expected {expected} records (the trailer's count, "
            f"header and trailer included), found {trailer_line}",
            expected=expected, found=trailer_line,
        )
    gen = st.header[HEADER_GENERATED].decode(ENCODING)
    try:
        generated = dt.datetime.strptime(gen, "%Y%m%d").date()
    except ValueError:
        generated = None
    return generated, expected


# --------------------------------------------------------------------------------------------
# Public API


def _not_a_header(head: bytes) -> str:
    """Why the first record is not a COTAHIST header, naming the two ways an edited file usually breaks."""
    if head.startswith(codecs.BOM_UTF8):
        return ("the file starts with a UTF-8 byte-order mark (EF BB BF), so its first record is not a COTAHIST "
                "header: B3's files are plain Latin-1 text; save it without the BOM")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "the file is UTF-16 text (it starts with a UTF-16 byte-order mark): B3's files are Latin-1 text"
    if b"\n" not in head and b"\r" in head:
        return ("lines end in CR only (old Mac line endings), so the file reads as one line: COTAHIST records "
                f"are {RECORD_LENGTH} characters ended by CRLF or LF; convert the line endings")
    if head[:2] == b"00" and head[2:10] != b"COTAHIST":
        return f"first record is not a COTAHIST header: it starts {head[:10]!r}, expected '00COTAHIST'"
    if head.startswith(b"00COTAHIST"):
        first = head.split(b"\n")[0].rstrip(b"\r")
        return (f"the header record is {len(first)} characters, expected {RECORD_LENGTH} (a truncated or "
                "re-wrapped line?)")
    return "first record is not a COTAHIST header ('00COTAHIST...')"


def _iter_stream(stream: BinaryIO, st: _StreamState, path: Path, chunk_bytes: int) -> Iterator[_Batch]:
    try:
        for chunk in _iter_line_chunks(stream, chunk_bytes):
            yield _process_chunk(chunk, st)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise CotahistError(f"{path}: corrupted or truncated ZIP member ({exc})") from exc


def _collect(batches: Iterator[_Batch], st: _StreamState, path: Path) -> CotahistRead:
    quotes, quarantine = [], []
    for b in batches:
        quotes.append(b.quotes)
        if len(b.quarantine):
            quarantine.append(b.quarantine)
    generated, count = _finish(st, path)
    q = pd.concat(quotes, ignore_index=True) if len(quotes) > 1 else (quotes[0] if quotes else _empty_quotes())
    qq = pd.concat(quarantine, ignore_index=True) if quarantine else _quarantine_frame([])
    return CotahistRead(st.name, q, qq, generated, count, count)


def iter_cotahist(
    path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Stream a COTAHIST file as ``(quotes, quarantine)`` batches with bounded memory.

    The file's integrity (header, trailer count) is verified after the last batch; a failure
    raises ``CotahistError`` then, so a consumer writing batches to storage must do so in a
    transaction it can roll back.
    """
    path = Path(path)
    with _opened(path) as (stream, name):
        st = _StreamState(name=name)
        for b in _iter_stream(stream, st, path, chunk_bytes):
            yield b.quotes, b.quarantine
    _finish(st, path)


def read_cotahist_with_quarantine(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> CotahistRead:
    """Read a whole file: quotes, quarantined lines and the header/trailer facts."""
    path = Path(path)
    with _opened(path) as (stream, name):
        st = _StreamState(name=name)
        return _collect(_iter_stream(stream, st, path, chunk_bytes), st, path)


def read_cotahist(path: str | Path) -> pd.DataFrame:
    """Quote records (type 01) of one COTAHIST file (.TXT or .ZIP; daily, monthly or yearly).

    Prices are per unit (field / 100 / FATCOT), ``volume`` is money, dates are ``datetime64``
    (DATVEN 99991231 → NaT). Quarantined lines are not in the result; their count is in
    ``df.attrs["quarantined"]`` — use :func:`read_cotahist_with_quarantine` to get the lines.
    """
    res = read_cotahist_with_quarantine(path)
    df = res.quotes
    df.attrs["quarantined"] = len(res.quarantine)
    df.attrs["file"] = res.file
    return df


def read_cotahist_bytes(data: bytes, name: str = "<bytes>") -> CotahistRead:
    """Parse an in-memory COTAHIST text (download verification, tests)."""
    st = _StreamState(name=name)
    return _collect(_iter_stream(io.BytesIO(data), st, Path(name), DEFAULT_CHUNK_BYTES), st, Path(name))
