"""COTAHIST reader: exact values, integrity checks, quarantine, file variants."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from b3quant_models.cotahist import (
    CotahistError,
    format_cotahist,
    format_quote_record,
    iter_cotahist,
    read_cotahist,
    read_cotahist_bytes,
    read_cotahist_with_quarantine,
)
from b3quant_models.cotahist.layout import QUOTE_COLUMNS, RECORD_LENGTH

DAY = dt.date(2024, 3, 15)

# A hand-made option line on a quote factor of 1000, every field non-trivial.
ROW = {
    "trade_date": pd.Timestamp("2024-03-15"),
    "bdi_code": "78",
    "ticker": "XPTOC123",
    "market_type": "070",
    "company": "XPTO ÇÃO SA",  # latin-1 characters must round-trip
    "specification": "ON NM",
    "forward_days": "",
    "currency": "R$",
    "open": 1.234,
    "high": 1.5,
    "low": 1.001,
    "avg": 1.25,
    "close": 1.4,
    "best_bid": 1.39,
    "best_ask": 1.41,
    "trades": 42,
    "quantity": 123_456_789_012,
    "volume": 98_765_432.10,
    "strike": 12.345,
    "strike_correction": 0,
    "expiry": pd.Timestamp("2024-04-19"),
    "quote_factor": 1000,
    "strike_points": 1.234567,
    "isin": "BRXPTOACNOR1",
    "distribution": 123,
}


def _file(tmp_path: Path, records: list[str], name: str = "COTAHIST_D15032024.TXT", eol: str = "\r\n") -> Path:
    text = format_cotahist(records, DAY).replace("\r\n", eol)
    p = tmp_path / name
    p.write_bytes(text.encode("latin-1"))
    return p


def test_hand_made_line_every_field(tmp_path: Path) -> None:
    rec = format_quote_record(ROW)
    assert len(rec) == RECORD_LENGTH
    # Positions straight from B3's layout: PREULT cols 109-121 hold close*100*FATCOT.
    assert rec[108:121] == "0000000140000"
    assert rec[170:188] == "000000009876543210"  # VOLTOT: money with 2 decimals, no FATCOT
    assert rec[217:230] == "0000001234567"  # PTOEXE: 6 decimals
    df = read_cotahist(_file(tmp_path, [rec]))
    assert list(df.columns) == list(QUOTE_COLUMNS)
    got = df.iloc[0].to_dict()
    for k, v in ROW.items():
        assert got[k] == v, k
    assert df["expiry"].dtype == "datetime64[ns]"


def test_no_expiry_is_null_and_strings_stripped(tmp_path: Path) -> None:
    row = {**ROW, "expiry": None, "market_type": "010", "ticker": "XPTO3", "quote_factor": 1}
    df = read_cotahist(_file(tmp_path, [format_quote_record(row)]))
    assert pd.isna(df.loc[0, "expiry"])
    assert df.loc[0, "ticker"] == "XPTO3" and df.loc[0, "market_type"] == "010"
    assert df.loc[0, "close"] == 1.4  # factor 1: plain /100


def test_real_file_counts_and_values(real_daily_file: Path) -> None:
    res = read_cotahist_with_quarantine(real_daily_file)
    q = res.quotes
    assert res.trailer_count == res.records_read == 1745
    assert res.generated_on == dt.date(2016, 1, 4)
    assert len(q) == 1743 and len(res.quarantine) == 0
    counts = q["market_type"].value_counts()
    assert (counts["010"], counts["070"], counts["080"]) == (424, 596, 365)
    petr = q[(q.ticker == "PETR4") & (q.market_type == "010")].iloc[0]
    assert (petr.open, petr.high, petr.low, petr.avg, petr.close) == (6.57, 7.03, 6.55, 6.84, 6.87)
    assert (petr.trades, petr.quantity, petr.volume) == (24012, 45962100, 314449892.00)
    assert petr["isin"] == "BRPETRACNPR6" and petr.company == "PETROBRAS" and petr.specification == "PN"
    opt = q[q.ticker == "PETRA13"].iloc[0]
    assert opt.strike == 8.7 and opt.expiry == pd.Timestamp("2016-01-18") and opt["isin"] == "BRPETRACNPR6"
    assert (q["trade_date"] == pd.Timestamp("2016-01-04")).all()


def test_real_file_volume_is_quantity_times_average(real_daily_file: Path) -> None:
    # B3 truncates PREMED to the cent, so q*avg <= volume < q*(avg + 0.01) on every traded line.
    q = read_cotahist(real_daily_file)
    t = q[q.trades > 0]
    assert len(t) > 1000
    assert (t.volume >= t.quantity * t.avg - 0.01).all()
    assert (t.volume <= t.quantity * (t.avg + 0.01) + 0.01).all()


def test_trailer_mismatch_names_file_and_counts(tmp_path: Path) -> None:
    p = _file(tmp_path, [format_quote_record(ROW)] * 3)
    lines = p.read_bytes().split(b"\r\n")
    del lines[2]  # drop a quote: a truncated download
    p.write_bytes(b"\r\n".join(lines))
    with pytest.raises(CotahistError, match=r"COTAHIST_D15032024\.TXT.*expected 5 records.*found 4") as exc:
        read_cotahist(p)
    assert (exc.value.expected, exc.value.found) == (5, 4)  # as attributes: callers never parse the message


def test_missing_trailer_is_truncation(tmp_path: Path) -> None:
    p = _file(tmp_path, [format_quote_record(ROW)] * 3)
    p.write_bytes(b"\r\n".join(p.read_bytes().split(b"\r\n")[:3]))
    with pytest.raises(CotahistError, match="no trailer"):
        read_cotahist(p)


def test_malformed_lines_are_quarantined_with_line_and_reason(tmp_path: Path) -> None:
    good = format_quote_record(ROW)
    bad_digit = good[:108] + "00000000A4000" + good[121:]
    bad_date = good[:2] + "20240231" + good[10:]  # 31 February
    short = good[:200]
    p = _file(tmp_path, [good, bad_digit, good, bad_date, short, good])
    res = read_cotahist_with_quarantine(p)
    assert len(res.quotes) == 3
    qq = res.quarantine.set_index("line_number")
    assert list(qq.index) == [3, 5, 6]  # header is line 1
    assert "PREULT" in qq.loc[3, "reason"] and "'00000000A4000'" in qq.loc[3, "reason"]
    assert "DATA" in qq.loc[5, "reason"] and "impossible date" in qq.loc[5, "reason"]
    assert "record length 200" in qq.loc[6, "reason"]
    assert qq.loc[3, "raw"] == bad_digit and (qq["file"] == p.name).all()
    assert res.records_read == 8  # quarantined lines still count against the trailer


def test_zip_lf_and_no_final_newline(tmp_path: Path) -> None:
    recs = [format_quote_record(ROW), format_quote_record({**ROW, "ticker": "XPTOO123", "market_type": "080"})]
    txt = _file(tmp_path, recs)
    zpath = tmp_path / "COTAHIST_D15032024.ZIP"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(txt, txt.name)
    lf = _file(tmp_path, recs, name="lf.TXT", eol="\n")
    lf.write_bytes(lf.read_bytes().rstrip(b"\n"))
    base = read_cotahist(txt)
    pd.testing.assert_frame_equal(read_cotahist(zpath), base)
    pd.testing.assert_frame_equal(read_cotahist(lf), base)


def test_corrupt_zip_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "COTAHIST_D15032024.ZIP"
    p.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CotahistError, match="not a valid ZIP"):
        read_cotahist(p)


def test_chunked_streaming_equals_whole_read(real_daily_file: Path) -> None:
    whole = read_cotahist(real_daily_file)
    parts = list(iter_cotahist(real_daily_file, chunk_bytes=10_000))
    assert len(parts) > 10
    streamed = pd.concat([q for q, _ in parts], ignore_index=True)
    pd.testing.assert_frame_equal(streamed, whole)
    small = read_cotahist_with_quarantine(real_daily_file, chunk_bytes=4_000)
    pd.testing.assert_frame_equal(small.quotes, whole)


def test_bytes_and_header_checks() -> None:
    text = format_cotahist([format_quote_record(ROW)], DAY).encode("latin-1")
    assert len(read_cotahist_bytes(text).quotes) == 1
    with pytest.raises(CotahistError, match="header"):
        read_cotahist_bytes(text[RECORD_LENGTH + 2 :])


def test_numeric_types(real_daily_file: Path) -> None:
    q = read_cotahist(real_daily_file)
    assert q["trades"].dtype == np.int64 and q["quantity"].dtype == np.int64
    assert q["close"].dtype == np.float64 and q["trade_date"].dtype == "datetime64[ns]"


def test_text_decoding_survives_hash_collisions(real_daily_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Text fields are grouped by a 64-bit hash of the record's text; a collision must fall back
    # to exact per-field decoding. Force one: every row hashes to the same value.
    from b3quant_models.cotahist import reader

    expected = read_cotahist(real_daily_file)

    def all_collide(mat, starts, ends, out):
        out[:] = 0

    monkeypatch.setattr(reader, "_hash_spans", all_collide)
    pd.testing.assert_frame_equal(read_cotahist(real_daily_file), expected)


def test_blank_lines_inside_are_quarantined_and_trailing_ones_ignored(tmp_path: Path) -> None:
    recs = [format_quote_record(ROW)] * 2
    text = format_cotahist(recs, DAY)
    lines = text.split("\r\n")
    lines.insert(2, "")  # a blank line inside: not a record, but not silently skipped either
    body = "\r\n".join(lines).replace(f"{4:011d}", f"{5:011d}") + "\r\n\x1a"  # trailer counts it
    p = tmp_path / "COTAHIST_D15032024.TXT"
    p.write_bytes(body.encode("latin-1"))
    res = read_cotahist_with_quarantine(p)
    assert len(res.quotes) == 2
    assert res.quarantine["reason"].tolist() == ["blank line inside the file"]
    assert res.quarantine["line_number"].tolist() == [3]


def test_corrupted_zip_member_names_the_file(real_daily_file: Path, tmp_path: Path) -> None:
    zpath = tmp_path / "COTAHIST_D04012016.ZIP"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(real_daily_file, real_daily_file.name)
    data = bytearray(zpath.read_bytes())
    start = 30 + len(real_daily_file.name)  # local header, then the deflate stream
    data[start + 200 : start + 260] = bytes(60)
    zpath.write_bytes(bytes(data))
    with pytest.raises(CotahistError, match=r"COTAHIST_D04012016\.ZIP"):
        read_cotahist(zpath)


def test_header_errors_say_why(tmp_path: Path) -> None:
    """Issue 13: a CR-only or BOM file was reported as "not a header", which sent users looking at the header."""
    text = format_cotahist([format_quote_record(ROW)], DAY).encode("latin-1")
    cases = {
        "bom.TXT": (b"\xef\xbb\xbf" + text, "UTF-8 byte-order mark"),
        "utf16.TXT": (b"\xff\xfe" + text, "UTF-16"),
        "cr.TXT": (text.replace(b"\r\n", b"\r"), "CR only"),
        "short.TXT": (text[:10] + text[11:], "header record is 244 characters"),
    }
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CotahistError, match=why):
            read_cotahist_with_quarantine(tmp_path / name)
    with pytest.raises(CotahistError, match="is a directory"):
        read_cotahist_with_quarantine(tmp_path)
