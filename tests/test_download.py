"""COTAHIST download/landing against a loopback HTTP server (never the real B3)."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import b3quant.config
import pandas as pd
import pytest

from b3quant_models.cotahist.layout import QUOTE_COLUMNS, TRAILER_COUNT
from b3quant_models.cotahist.writer import daily_file_name, format_cotahist, quotes_to_records, write_cotahist
from b3quant_models.sources.cotahist_download import (
    CotahistDownloadError,
    CotahistIntegrityError,
    CotahistNotInLandingError,
    CotahistNotPublishedError,
    CotahistSource,
    NotASessionError,
    check_cotahist_file,
    check_cotahist_integrity,
    find_landing_file,
    find_yearly_landing_file,
)
from b3quant_models.testing.http import CannedResponse, LoopbackServer, block_non_loopback

SESSION = dt.date(2024, 2, 9)  # Friday before Carnival
CARNIVAL = dt.date(2024, 2, 12)  # Monday, B3 closed


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with block_non_loopback():
        yield


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


def _quotes(day: dt.date) -> pd.DataFrame:
    base = {
        "trade_date": day,
        "bdi_code": "02",
        "market_type": "010",
        "specification": "PN",
        "forward_days": "",
        "currency": "R$",
        "trades": 10,
        "quantity": 1000,
        "strike": 0.0,
        "strike_correction": 0,
        "expiry": None,
        "quote_factor": 1,
        "strike_points": 0.0,
        "distribution": 100,
    }
    rows = [
        {"ticker": "PETR4", "company": "PETROBRAS", "isin": "BRPETRACNPR6", "close": 38.5},
        {"ticker": "VALE3", "company": "VALE", "isin": "BRVALEACNOR0", "close": 66.1},
        {"ticker": "ITUB4", "company": "ITAUUNIBANCO", "isin": "BRITUBACNPR1", "close": 32.2},
    ]
    out = []
    for r in rows:
        px = r["close"]
        out.append(base | r | {"open": px, "high": px, "low": px, "avg": px, "best_bid": px, "best_ask": px})
    for r in out:
        r["volume"] = r["close"] * r["quantity"]
    return pd.DataFrame(out)[list(QUOTE_COLUMNS)]


def _daily_zip(tmp_path: Path, day: dt.date) -> tuple[bytes, bytes]:
    """(ZIP bytes as B3 would serve them, the TXT inside)."""
    zpath = write_cotahist(tmp_path / "src" / daily_file_name(day), _quotes(day), day, zip_it=True)
    data = zpath.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return data, z.read(daily_file_name(day))


def _zip_text(name: str, text: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, text)
    return buf.getvalue()


def _everything_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _source(landing: Path, server: LoopbackServer, **kw) -> CotahistSource:
    kw.setdefault("max_retries", 1)
    return CotahistSource(landing, base_url=server.base_url, **kw)


# -------------------------------------------------------------------------------- success / cache


def test_daily_download_lands_the_served_zip_byte_for_byte(tmp_path, server):
    data, txt = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data)
    landing = tmp_path / "landing"

    got = _source(landing, server).get_daily(SESSION)

    assert got.downloaded is True
    assert got.path == landing / "COTAHIST_D09022024.ZIP"
    assert got.url == f"{server.base_url}/COTAHIST_D09022024.ZIP"
    assert got.records == 5  # header + 3 quotes + trailer
    assert got.path.read_bytes() == data
    with zipfile.ZipFile(got.path) as z:
        assert z.read("COTAHIST_D09022024.TXT") == txt
    assert _everything_in(landing) == ["COTAHIST_D09022024.ZIP"]  # no temp leftovers
    assert server.hits("/COTAHIST_D09022024.ZIP") == 1


def test_downloaded_daily_file_is_parsed_once_and_read_as_landed(tmp_path, server):
    """The integrity check's read of a downloaded day is handed on (ingestion does not parse it again) and
    equals reading the landed file; a file found in the landing folder carries no read."""
    from b3quant_models.cotahist import read_cotahist_with_quarantine

    data, _ = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data)
    source = _source(tmp_path / "landing", server)
    got = source.get_daily(SESSION)
    again = read_cotahist_with_quarantine(got.path)
    assert got.read is not None and got.read.file == again.file
    pd.testing.assert_frame_equal(got.read.quotes, again.quotes)
    pd.testing.assert_frame_equal(got.read.quarantine, again.quarantine)
    assert source.get_daily(SESSION).read is None  # already landed: read by the consumer


def test_land_as_txt_keeps_the_extracted_text(tmp_path, server):
    data, txt = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data)
    landing = tmp_path / "landing"

    got = _source(landing, server, land_as="txt").get_daily(SESSION)

    assert got.path == landing / "COTAHIST_D09022024.TXT"
    assert got.path.read_bytes() == txt
    assert _everything_in(landing) == ["COTAHIST_D09022024.TXT"]


def test_second_call_is_served_from_landing_without_a_request(tmp_path, server):
    data, _ = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data)
    src = _source(tmp_path / "landing", server)

    first = src.get_daily(SESSION)
    second = src.get_daily(SESSION)

    assert second.downloaded is False
    assert second.path == first.path
    assert len(server.requests) == 1

    forced = src.get_daily(SESSION, force_download=True)
    assert forced.downloaded is True
    assert len(server.requests) == 2
    assert forced.path.read_bytes() == data


def test_refresh_removes_a_stale_copy_in_the_other_format(tmp_path, server):
    data, _ = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "cotahist_d09022024.txt").write_bytes(b"stale")

    got = _source(landing, server).download_daily(SESSION)

    assert _everything_in(landing) == ["COTAHIST_D09022024.ZIP"]
    assert find_landing_file(landing, SESSION) == got.path


def test_yearly_download(tmp_path, server):
    text = format_cotahist(quotes_to_records(_quotes(SESSION)), dt.date(2024, 12, 30)).encode("latin-1")
    data = _zip_text("COTAHIST_A2024.TXT", text)
    server.routes["/COTAHIST_A2024.ZIP"] = CannedResponse(body=data)
    landing = tmp_path / "landing"

    got = _source(landing, server).get_yearly(2024)

    assert got.path == landing / "COTAHIST_A2024.ZIP"
    assert got.path.read_bytes() == data
    assert find_yearly_landing_file(landing, 2024) == got.path
    assert _source(landing, server).get_yearly(2024).downloaded is False
    assert server.hits("/COTAHIST_A2024.ZIP") == 1


# -------------------------------------------------------------------------------- failures


def test_404_is_a_clear_final_error_and_lands_nothing(tmp_path, server):
    landing = tmp_path / "landing"
    src = _source(landing, server, max_retries=3)  # a 404 must not be retried

    with pytest.raises(CotahistNotPublishedError) as exc:
        src.get_daily(CARNIVAL, allow_non_session=True)

    url = f"{server.base_url}/COTAHIST_D12022024.ZIP"
    assert str(exc.value) == (
        f"B3 has no COTAHIST file for 2024-02-12 (holiday, weekend, or not yet published): {url}"
    )
    assert exc.value.url == url
    assert server.hits("/COTAHIST_D12022024.ZIP") == 1
    assert _everything_in(landing) == []


def test_non_session_day_is_refused_before_any_request(tmp_path, server):
    with pytest.raises(NotASessionError, match="2024-02-12 is not a B3 session"):
        _source(tmp_path / "landing", server).get_daily(CARNIVAL)
    with pytest.raises(NotASessionError):
        _source(tmp_path / "landing", server).get_daily(dt.date(2024, 2, 10))  # Saturday
    assert server.requests == []


def test_truncated_zip_fails_clearly_and_lands_nothing(tmp_path, server):
    data, _ = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data[: len(data) // 2])
    landing = tmp_path / "landing"

    with pytest.raises(CotahistIntegrityError, match=r"COTAHIST_D09022024\.ZIP .*not a valid ZIP"):
        _source(landing, server).get_daily(SESSION)

    assert _everything_in(landing) == []


def test_connection_dropped_mid_body_is_retried_then_fails_and_lands_nothing(tmp_path, server, monkeypatch):
    monkeypatch.setattr(b3quant.config, "RETRY_BASE_DELAY", 0.0)  # b3quant's backoff, without the wait
    data, _ = _daily_zip(tmp_path, SESSION)
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=data[:100], declared_length=len(data))
    landing = tmp_path / "landing"

    with pytest.raises(CotahistDownloadError, match=r"failed after 2 attempt\(s\)"):
        _source(landing, server, max_retries=2).get_daily(SESSION)

    assert server.hits("/COTAHIST_D09022024.ZIP") == 2
    assert _everything_in(landing) == []


def test_wrong_trailer_count_names_file_expected_and_found(tmp_path, server):
    text = format_cotahist(quotes_to_records(_quotes(SESSION)), SESSION).encode("latin-1")
    lines = text.split(b"\r\n")
    trailer = lines[-2]
    lines[-2] = trailer[: TRAILER_COUNT.start] + b"%011d" % 99 + trailer[TRAILER_COUNT.stop :]
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(
        body=_zip_text("COTAHIST_D09022024.TXT", b"\r\n".join(lines))
    )
    landing = tmp_path / "landing"

    with pytest.raises(CotahistIntegrityError) as exc:
        _source(landing, server).get_daily(SESSION)

    assert exc.value.expected == 99
    assert exc.value.found == 5
    assert "COTAHIST_D09022024" in str(exc.value)
    assert re.search(r"expected 99 records.*found 5", str(exc.value))
    assert _everything_in(landing) == []


def test_html_page_instead_of_zip(tmp_path, server):
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(
        body=b"<!DOCTYPE html><html>captcha</html>", content_type="text/html"
    )
    with pytest.raises(CotahistDownloadError, match="HTML page instead of a ZIP"):
        _source(tmp_path / "landing", server).get_daily(SESSION)
    assert _everything_in(tmp_path / "landing") == []


def test_server_error_with_one_attempt_is_not_retried(tmp_path, server):
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(status=503, body=b"busy")
    with pytest.raises(CotahistDownloadError, match="503"):
        _source(tmp_path / "landing", server).get_daily(SESSION)
    assert server.hits("/COTAHIST_D09022024.ZIP") == 1


def test_zip_without_the_expected_txt(tmp_path, server):
    server.routes["/COTAHIST_D09022024.ZIP"] = CannedResponse(body=_zip_text("README.md", b"hello"))
    with pytest.raises(CotahistIntegrityError, match=r"does not contain COTAHIST_D09022024\.TXT"):
        _source(tmp_path / "landing", server).get_daily(SESSION)
    assert _everything_in(tmp_path / "landing") == []


def test_invalid_settings():
    with pytest.raises(ValueError, match="max_retries"):
        CotahistSource("x", max_retries=0)
    with pytest.raises(ValueError, match="land_as"):
        CotahistSource("x", land_as="gz")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- offline landing


def test_offline_reads_landing_any_case_and_never_touches_the_network(tmp_path, server):
    data, txt = _daily_zip(tmp_path, SESSION)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "cotahist_d09022024.zip").write_bytes(data)
    other = dt.date(2024, 2, 8)
    (landing / "COTAHIST_D08022024.txt").write_bytes(txt)
    src = _source(landing, server, offline=True)

    assert src.get_daily(SESSION).path == landing / "cotahist_d09022024.zip"
    assert src.get_daily(other).path == landing / "COTAHIST_D08022024.txt"
    assert src.get_daily("2024-02-09").downloaded is False
    with pytest.raises(CotahistNotInLandingError, match=r"2024-02-07 .*COTAHIST_D07022024\.TXT/\.ZIP"):
        src.get_daily(dt.date(2024, 2, 7))
    assert server.requests == []


def test_find_landing_file_prefers_txt_and_ignores_other_names(tmp_path):
    landing = tmp_path / "landing"
    assert find_landing_file(landing, SESSION) is None  # folder does not exist
    landing.mkdir()
    (landing / "COTAHIST_D09022024.ZIP").write_bytes(b"z")
    (landing / "COTAHIST_D09022024.TXT.part").write_bytes(b"half")
    (landing / ".cotahist-tmp-abc").mkdir()
    assert find_landing_file(landing, SESSION) == landing / "COTAHIST_D09022024.ZIP"
    (landing / "Cotahist_D09022024.Txt").write_bytes(b"t")
    assert find_landing_file(landing, SESSION) == landing / "Cotahist_D09022024.Txt"
    assert find_landing_file(landing, dt.date(2024, 2, 8)) is None


# -------------------------------------------------------------------------------- integrity check


def test_check_integrity_accepts_writer_output_and_counts_lines(tmp_path):
    data, txt = _daily_zip(tmp_path, SESSION)
    assert check_cotahist_integrity(txt, "x.TXT") == 5
    assert check_cotahist_integrity(txt + b"\r\n\x1a", "x.TXT") == 5  # trailing blank / EOF tolerated
    z = tmp_path / "x.ZIP"
    z.write_bytes(data)
    assert check_cotahist_file(z) == 5


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda lines: lines[1:], "not a COTAHIST header"),
        (lambda lines: lines[:-2], "no trailer record"),
        (lambda lines: [*lines[:2], b"", *lines[2:]], "expected 5 records.*found 6"),
        (lambda lines: [], "empty"),
    ],
)
def test_check_integrity_rejects_broken_text(tmp_path, mangle, message):
    _, txt = _daily_zip(tmp_path, SESSION)
    lines = txt.split(b"\r\n")[:-1]  # drop the empty piece after the final CRLF
    broken = b"\r\n".join(mangle(lines))
    with pytest.raises(CotahistIntegrityError, match=message) as exc:
        check_cotahist_integrity(broken, "COTAHIST_D09022024.TXT")
    assert "COTAHIST_D09022024.TXT" in str(exc.value)


def test_check_integrity_on_the_real_b3_file(real_daily_file):
    assert check_cotahist_integrity(real_daily_file.read_bytes(), real_daily_file.name) == 1745
    assert check_cotahist_file(real_daily_file) == 1745
