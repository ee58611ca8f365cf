"""CDI risk-free rate: SGS via python-bcb against a loopback server, offline CSV, conventions."""

from __future__ import annotations

import datetime as dt
import json
import math
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from bcb import sgs as bcb_sgs

from b3quant_models.sources.rates import (
    SGS_CDI_ANNUAL_252,
    SGS_CDI_DAILY,
    MissingRateError,
    RateSource,
    RateSourceError,
    cdi_to_continuous,
    continuous_to_cdi,
    di_discount_factor,
    fetch_cdi_sgs,
    parse_sgs_json,
    rate_for_day,
    rates_for_days,
    read_landing_rates,
    read_rates_file,
    read_sgs_file,
    write_rates_file,
)
from b3quant_models.testing.http import CannedResponse, LoopbackServer, block_non_loopback

# CDI around the first week of 2016 (annual %, 252 basis) and the matching daily % (series 12).
ANNUAL = {
    dt.date(2016, 1, 4): "14.13",
    dt.date(2016, 1, 5): "14.13",
    dt.date(2016, 1, 6): "14.14",
    dt.date(2016, 1, 7): "14.14",
    dt.date(2016, 1, 8): "14.14",
}
DAILY = {dt.date(2016, 1, 4): "0.052462"}


@pytest.fixture(autouse=True)
def _loopback_only():
    with block_non_loopback():
        yield


def _sgs_route(values: dict[dt.date, str]):
    """Mimic SGS: filter by dataInicial/dataFinal (dd/mm/yyyy), answer JSON like the BCB does."""

    def respond(target: str) -> CannedResponse:
        q = parse_qs(urlsplit(target).query)
        assert q["formato"] == ["json"]
        lo = dt.datetime.strptime(q["dataInicial"][0], "%d/%m/%Y").date()
        hi = dt.datetime.strptime(q["dataFinal"][0], "%d/%m/%Y").date()
        rows = [{"data": f"{d:%d/%m/%Y}", "valor": v} for d, v in sorted(values.items()) if lo <= d <= hi]
        return CannedResponse(body=json.dumps(rows).encode(), content_type="application/json")

    return respond


@pytest.fixture
def sgs():
    with LoopbackServer() as s:
        s.routes["/dados/serie/bcdata.sgs.4389/dados"] = _sgs_route(ANNUAL)
        s.routes["/dados/serie/bcdata.sgs.12/dados"] = _sgs_route(DAILY)
        yield s


def _query(target: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}


# -------------------------------------------------------------------------------- SGS


def test_fetch_sgs_4389_through_python_bcb(sgs):
    original = bcb_sgs._get_url_and_payload

    df = fetch_cdi_sgs("2016-01-04", "2016-01-08", base_url=sgs.base_url)

    assert list(df.columns) == ["trade_date", "cdi_annual"]
    assert df["trade_date"].dt.date.tolist() == sorted(ANNUAL)
    assert df["cdi_annual"].tolist() == pytest.approx([0.1413, 0.1413, 0.1414, 0.1414, 0.1414], abs=1e-15)
    want = {"formato": "json", "dataInicial": "04/01/2016", "dataFinal": "08/01/2016"}
    assert _query(sgs.requests[0]) == want
    assert "bcdata.sgs.4389" in df.attrs["source"]
    assert bcb_sgs._get_url_and_payload is original  # the redirect is undone


def test_fetch_sgs_12_compounds_the_daily_rate(sgs):
    df = fetch_cdi_sgs(dt.date(2016, 1, 4), dt.date(2016, 1, 4), series=SGS_CDI_DAILY, base_url=sgs.base_url)
    expected = (1 + 0.052462 / 100) ** 252 - 1
    assert df["cdi_annual"].iloc[0] == pytest.approx(expected, rel=1e-14)
    assert df["cdi_annual"].iloc[0] == pytest.approx(0.1413, abs=5e-5)  # consistent with series 4389


def test_long_ranges_are_split_into_sgs_windows(sgs):
    df = fetch_cdi_sgs("2004-06-01", "2016-01-08", base_url=sgs.base_url)

    windows = [_query(t) for t in sgs.requests]
    assert len(windows) == 2
    spans = [
        (dt.datetime.strptime(w["dataInicial"], "%d/%m/%Y"), dt.datetime.strptime(w["dataFinal"], "%d/%m/%Y"))
        for w in windows
    ]
    assert spans[0][0] == dt.datetime(2004, 6, 1) and spans[-1][1] == dt.datetime(2016, 1, 8)
    assert spans[1][0] - spans[0][1] == dt.timedelta(days=1)  # contiguous, no overlap
    assert all((b - a).days < 3650 for a, b in spans)  # the API refuses > 10 years of daily data
    assert len(df) == len(ANNUAL)


def test_sgs_error_is_reported_with_series_and_url(sgs):
    sgs.routes["/dados/serie/bcdata.sgs.4389/dados"] = CannedResponse(
        status=404, body=b'{"error": "Value(s) not found"}', content_type="application/json"
    )
    msg = r"SGS series 4389 2016-01-04\.\.2016-01-08 .*Value\(s\) not found"
    with pytest.raises(RateSourceError, match=msg):
        fetch_cdi_sgs("2016-01-04", "2016-01-08", base_url=sgs.base_url)
    assert len(sgs.requests) == 1


def test_sgs_garbage_is_rejected(sgs):
    sgs.routes["/dados/serie/bcdata.sgs.4389/dados"] = CannedResponse(body=b"<html>maintenance</html>")
    with pytest.raises(RateSourceError, match="not JSON"):
        fetch_cdi_sgs("2016-01-04", "2016-01-08", base_url=sgs.base_url)


def test_parse_sgs_json_validates_input():
    with pytest.raises(RateSourceError, match="list of"):
        parse_sgs_json('{"data": "04/01/2016"}')
    with pytest.raises(RateSourceError, match="unreadable"):
        parse_sgs_json('[{"data": "2016-01-04", "valor": "14.13"}]')
    with pytest.raises(ValueError, match="unsupported SGS series"):
        parse_sgs_json("[]", series=11)
    assert parse_sgs_json("[]").empty
    assert parse_sgs_json('[{"data": "04/01/2016", "valor": "14,13"}]')["cdi_annual"].iloc[0] == 0.1413


def test_rate_source_online_gives_the_day_rate(sgs):
    r = RateSource(base_url=sgs.base_url).rate_for_day(dt.date(2016, 1, 6))
    assert r.trade_date == dt.date(2016, 1, 6)
    assert r.cdi_annual == pytest.approx(0.1414, abs=1e-15)
    assert r.r_cont == pytest.approx(math.log(1.1414), rel=1e-14)


# -------------------------------------------------------------------------------- offline CSV


def _write_csv(path, text: str):
    path.write_text(text)
    return path


def test_read_rates_file_and_rate_for_day(tmp_path):
    text = "date,cdi_annual_pct\n2016-01-05,14.13\n2016-01-04,14.13\n2016-01-06,14.14\n"
    f = _write_csv(tmp_path / "cdi.csv", text)
    rates = read_rates_file(f)

    assert rates["trade_date"].dt.date.tolist() == [dt.date(2016, 1, 4), dt.date(2016, 1, 5), dt.date(2016, 1, 6)]
    r = rate_for_day(rates, "2016-01-06")
    assert r.cdi_annual == pytest.approx(0.1414, abs=1e-15)
    assert r.r_cont == pytest.approx(math.log1p(0.1414), rel=1e-15)
    frame = r.to_frame()
    assert list(frame.columns) == ["trade_date", "cdi_annual", "r_cont"]
    assert frame["trade_date"].iloc[0] == pd.Timestamp("2016-01-06")


def test_missing_day_fails_loudly_naming_day_and_source(tmp_path):
    f = _write_csv(tmp_path / "cdi.csv", "date,cdi_annual_pct\n2016-01-04,14.13\n2016-01-06,14.14\n")
    rates = read_rates_file(f)

    with pytest.raises(MissingRateError) as exc:
        rate_for_day(rates, dt.date(2016, 1, 5))
    assert "2016-01-05" in str(exc.value)
    assert str(f) in str(exc.value)

    with pytest.raises(MissingRateError, match=r"2 day\(s\).*2016-01-05, 2016-01-07"):
        rates_for_days(rates, [dt.date(2016, 1, 4), dt.date(2016, 1, 5), dt.date(2016, 1, 7)])


def test_rates_for_days_vectorised(tmp_path):
    f = _write_csv(tmp_path / "cdi.csv", "date,cdi_annual_pct\n2016-01-04,14.13\n2016-01-05,14.14\n")
    out = rates_for_days(read_rates_file(f), ["2016-01-05", "2016-01-04", "2016-01-05"])
    assert out["trade_date"].dt.date.tolist() == [dt.date(2016, 1, 5), dt.date(2016, 1, 4), dt.date(2016, 1, 5)]
    np.testing.assert_allclose(out["r_cont"], np.log1p([0.1414, 0.1413, 0.1414]), rtol=1e-15)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("day,rate\n2016-01-04,14.13\n", "lacks column"),
        ("date,cdi_annual_pct\n04/01/2016,14.13\n", "unreadable row"),
        ("date,cdi_annual_pct\n2016-01-04,abc\n", "unreadable row"),
        ("date,cdi_annual_pct\n2016-01-04,0.1413\n2016-01-05,0.1413\n", "percent"),
        ("date,cdi_annual_pct\n2016-01-04,14.13\n2016-01-04,14.50\n", "conflicting rates"),
    ],
)
def test_bad_rates_files_are_rejected(tmp_path, text, message):
    with pytest.raises(RateSourceError, match=message):
        read_rates_file(_write_csv(tmp_path / "cdi.csv", text))


def test_missing_rates_file(tmp_path):
    with pytest.raises(RateSourceError, match="does not exist"):
        read_rates_file(tmp_path / "nope.csv")


def test_write_then_read_round_trips(tmp_path, sgs):
    fetched = fetch_cdi_sgs("2016-01-04", "2016-01-08", base_url=sgs.base_url)
    path = write_rates_file(fetched, tmp_path / "landing" / "cdi.csv")

    assert path.read_text().splitlines()[:2] == ["date,cdi_annual_pct", "2016-01-04,14.13"]
    back = read_rates_file(path)
    pd.testing.assert_frame_equal(back, fetched, check_exact=False, rtol=1e-14)
    assert not (tmp_path / "landing" / "cdi.csv.part").exists()


def test_rate_source_offline_uses_landing_csv_and_no_network(tmp_path, sgs):
    _write_csv(tmp_path / "cdi.csv", "date,cdi_annual_pct\n2016-01-04,14.13\n2016-01-05,14.14\n")
    src = RateSource(tmp_path, offline=True, base_url=sgs.base_url)

    assert src.rate_for_day("2016-01-05").cdi_annual == pytest.approx(0.1414, abs=1e-15)
    assert src.rates("2016-01-05", "2016-01-31")["trade_date"].dt.date.tolist() == [dt.date(2016, 1, 5)]
    with pytest.raises(MissingRateError, match="2016-01-06"):
        src.rate_for_day("2016-01-06")
    assert sgs.requests == []
    with pytest.raises(ValueError, match="landing_dir"):
        RateSource(offline=True)


# -------------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("r", [0.019, 0.1413, 0.4])
@pytest.mark.parametrize("n", [1, 21, 252, 517])
def test_continuous_rate_reproduces_di_compounding(r, n):
    r_cont = cdi_to_continuous(r)
    assert math.exp(r_cont * n / 252) == pytest.approx((1 + r) ** (n / 252), rel=1e-13)
    assert di_discount_factor(r, n) == pytest.approx(math.exp(-r_cont * n / 252), rel=1e-13)
    assert continuous_to_cdi(r_cont) == pytest.approx(r, rel=1e-14)


def test_conversions_are_vectorised():
    r = np.array([0.1, 0.1413])
    np.testing.assert_allclose(cdi_to_continuous(r), np.log1p(r), rtol=1e-15)
    dfs = di_discount_factor(r, np.array([252, 126]))
    np.testing.assert_allclose(dfs, [1 / 1.1, 1.1413**-0.5], rtol=1e-14)
    assert isinstance(cdi_to_continuous(0.1413), float)


def test_sgs_series_constants():
    assert SGS_CDI_ANNUAL_252 == 4389
    assert SGS_CDI_DAILY == 12


# -------------------------------------------------------------------------------- SGS JSON landing files


def test_sgs_json_landing_file_with_bom_is_read_by_series_in_its_name(tmp_path, sgs):
    # What the SGS API returns for series 12 (daily %), saved with a BOM as some tools do.
    text = '[{"data": "04/01/2016", "valor": "0.052531"}, {"data": "05/01/2016", "valor": "0,052531"}]'
    (tmp_path / "cdi_sgs12.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    src = RateSource(tmp_path, offline=True, base_url=sgs.base_url)
    r = src.rate_for_day("2016-01-05")
    assert r.cdi_annual == pytest.approx((1 + 0.052531 / 100) ** 252 - 1, rel=1e-12)
    assert "cdi_sgs12.json" in r.source and sgs.requests == []


def test_csv_wins_over_sgs_json_on_shared_days_and_both_cover_the_rest(tmp_path):
    _write_csv(tmp_path / "cdi.csv", "date,cdi_annual_pct\n2016-01-04,14.13\n")
    (tmp_path / "cdi_sgs4389.json").write_text(
        '[{"data": "04/01/2016", "valor": "14.00"}, {"data": "05/01/2016", "valor": "14.14"}]'
    )
    rates = read_landing_rates(tmp_path)
    assert rates["cdi_annual"].tolist() == pytest.approx([0.1413, 0.1414])


def test_an_sgs_file_whose_name_gives_no_series_is_refused(tmp_path):
    (tmp_path / "cdi.json").write_text("[]")
    with pytest.raises(RateSourceError, match=r"cdi_sgs<series>\.json"):
        read_sgs_file(tmp_path / "cdi.json")
    with pytest.raises(RateSourceError, match="no rates file"):
        read_landing_rates(tmp_path)


def test_real_sgs12_file_gives_the_cdi_of_2026(tmp_path):
    from conftest import REAL_B3_DIR

    path = REAL_B3_DIR / "cdi_sgs12.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rates = read_sgs_file(path)
    r = rate_for_day(rates, "2026-02-25")
    assert 0.14 < r.cdi_annual < 0.16  # CDI about 14.9% a year in early 2026
