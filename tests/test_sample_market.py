"""Sample market: genuine COTAHIST, B3 conventions, arbitrage-free truth, exact ground truth,
reproducibility. One small market (15 sessions x 2 underlyings, weeklies on) is generated per module."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from b3quant_models.calendar import business_days, monthly_option_expiry, sessions, third_weekday
from b3quant_models.cotahist.layout import RECORD_LENGTH
from b3quant_models.cotahist.reader import read_cotahist
from b3quant_models.cotahist.writer import daily_file_name
from b3quant_models.sample_market import (
    CDI_FILE,
    TRUTH_FILES,
    SampleMarketConfig,
    SampleMarketManifest,
    generate_sample_market,
    is_generated,
    iter_sessions,
    simulate_market,
)
from b3quant_models.sample_market.chains import CALL_LETTERS, PUT_LETTERS, strike_code_multiplier
from b3quant_models.sample_market.config import UNDERLYING_REGISTRY
from b3quant_models.sample_market.dynamics import (
    DynParams,
    atm_total_variance,
    expected_next_iv,
    next_day_nodes,
    ssvi_phi,
    ssvi_rho_eta,
    ssvi_total_variance,
    step_from_shocks,
    surface_iv,
)

CONFIG = SampleMarketConfig(n_days=15, underlyings=("PETR4", "ABEV3"))


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleMarketManifest, list]:
    out = tmp_path_factory.mktemp("sample_market")
    calls: list[tuple[int, int]] = []
    manifest = generate_sample_market(out, CONFIG, progress=lambda i, n: calls.append((i, n)))
    return out, manifest, calls


@pytest.fixture(scope="module")
def sessions_written() -> list:
    """The exact quote frames the generator meant to write (regenerated in memory)."""
    return list(iter_sessions(simulate_market(CONFIG)))


@pytest.fixture(scope="module")
def truth(market_dir) -> pd.DataFrame:
    return pd.read_parquet(market_dir[1].truth_path("option_iv"))


@pytest.fixture(scope="module")
def quotes(market_dir) -> pd.DataFrame:
    return pd.concat([read_cotahist(p) for p in market_dir[1].cotahist_paths], ignore_index=True)


# --- files, manifest, progress -------------------------------------------------------------------


def test_one_file_per_session_and_manifest(market_dir) -> None:
    out, m, calls = market_dir
    days = sessions(CONFIG.start, dt.date(2025, 3, 1))[: CONFIG.n_days]
    assert list(m.cotahist_files) == [daily_file_name(d) for d in days]
    assert (m.start, m.end, m.n_sessions) == (days[0], days[-1], 15)
    assert calls == [(i, 15) for i in range(1, 16)]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["seed"] == 7 and on_disk["config"]["n_days"] == 15
    for name, digest in m.sha256.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert set(TRUTH_FILES.values()) | {CDI_FILE} <= set(m.sha256)
    assert is_generated(out, CONFIG)
    assert not is_generated(out, SampleMarketConfig(n_days=15, underlyings=("PETR4", "ABEV3"), seed=8))
    assert not is_generated(out / "nowhere", CONFIG)


def test_header_trailer_and_record_count(market_dir) -> None:
    m = market_dir[1]
    total = 0
    for path in m.cotahist_paths:
        lines = path.read_bytes().split(b"\r\n")
        assert lines[-1] == b""
        lines = lines[:-1]
        assert all(len(x) == RECORD_LENGTH for x in lines)
        assert lines[0].startswith(b"00COTAHIST.2025BOVESPA ")
        assert lines[-1].startswith(b"99COTAHIST.2025BOVESPA ")
        assert int(lines[-1][31:42]) == len(lines)
        assert all(x.startswith(b"01") for x in lines[1:-1])
        total += len(lines)
    assert total == m.counts["cotahist_records"]


def test_round_trip_through_read_cotahist(market_dir, sessions_written) -> None:
    """Every field the reader gets back equals what the generator meant to write."""
    m = market_dir[1]
    for path, sess in zip(m.cotahist_paths, sessions_written, strict=True):
        got = read_cotahist(path)
        want = sess.quotes
        assert got.attrs["quarantined"] == 0
        assert list(got.columns) == list(want.columns)
        assert len(got) == len(want)
        for col in want.columns:
            g, w = got[col], want[col]
            if col == "trade_date":
                assert (g == pd.Timestamp(sess.day)).all()
            elif col == "expiry":
                expected = pd.to_datetime(pd.Series([pd.NaT if x is None else x for x in w]))
                assert g.reset_index(drop=True).equals(expected.astype(g.dtype)), col
            elif w.dtype.kind == "f":
                np.testing.assert_allclose(
                    g.to_numpy(float), w.to_numpy(float), rtol=0, atol=1e-9, err_msg=col
                )
            elif w.dtype.kind in "iu":
                np.testing.assert_array_equal(g.to_numpy(np.int64), w.to_numpy(np.int64), err_msg=col)
            else:
                assert g.tolist() == [str(x).strip() for x in w], col


def test_b3quant_parser_reads_the_files(market_dir) -> None:
    from b3quant.parsers.cotahist import COTAHISTParser

    m = market_dir[1]
    parser = COTAHISTParser()
    for path in m.cotahist_paths[:3]:
        ours = read_cotahist(path)
        theirs = parser.parse_file(path, instrument_filter="all")
        assert len(theirs) == len(ours)
        assert sorted(theirs["ticker"]) == sorted(ours["ticker"])
        opts = parser.parse_file(path, instrument_filter="options")
        assert len(opts) == ours["market_type"].isin(["070", "080"]).sum()


def test_zip_files_are_deterministic_and_equal_to_txt(tmp_path: Path, market_dir) -> None:
    cfg = SampleMarketConfig(n_days=3, underlyings=("PETR4", "ABEV3"), zip_files=True)
    a = generate_sample_market(tmp_path / "a", cfg)
    b = generate_sample_market(tmp_path / "b", cfg)
    assert all(f.endswith(".ZIP") for f in a.cotahist_files)
    for pa, pb, txt in zip(a.cotahist_paths, b.cotahist_paths, market_dir[1].cotahist_paths, strict=False):
        assert pa.read_bytes() == pb.read_bytes()
        pd.testing.assert_frame_equal(read_cotahist(pa), read_cotahist(txt), check_like=False)


# --- B3 conventions --------------------------------------------------------------------------------


def test_cash_rows(quotes: pd.DataFrame, market_dir) -> None:
    cash = quotes[quotes["market_type"] == "010"]
    assert (cash["bdi_code"] == "02").all()
    assert len(cash) == 15 * 2
    assert set(cash["isin"]) == {"BRPETRACNPR6", "BRABEVACNOR1"}
    assert (cash.loc[cash["ticker"] == "ABEV3", "quote_factor"] == 1000).all()
    assert cash["expiry"].isna().all()
    und = pd.read_parquet(market_dir[1].truth_path("underlying"))
    merged = cash.merge(und, left_on=["trade_date", "ticker"], right_on=["trade_date", "underlying_ticker"])
    np.testing.assert_allclose(merged["close_x"], merged["close_y"], atol=1e-9)


def test_trade_fields_are_consistent(quotes: pd.DataFrame) -> None:
    q = quotes
    assert (q["trades"] >= 1).all() and (q["quantity"] > 0).all()  # B3's daily file has no no-trade rows
    assert (q["high"] >= q[["open", "close", "avg"]].max(axis=1) - 1e-9).all()
    assert (q["low"] <= q[["open", "close", "avg"]].min(axis=1) + 1e-9).all()
    assert (q["low"] >= 0.01 - 1e-12).all()
    np.testing.assert_allclose(q["volume"], np.round(q["quantity"] * q["avg"], 2), atol=1e-6)
    both = (q["best_bid"] > 0) & (q["best_ask"] > 0)
    assert (q.loc[both, "best_bid"] < q.loc[both, "best_ask"]).all()
    cents = np.round(q[["open", "high", "low", "avg", "close", "best_bid", "best_ask"]] * 100)
    np.testing.assert_allclose(cents / 100, q[cents.columns], atol=1e-9)  # 0.01 tick


def test_option_tickers_follow_series_letter_rule(quotes: pd.DataFrame) -> None:
    opts = quotes[quotes["market_type"].isin(["070", "080"])]
    assert len(opts) > 100
    roots = {s.isin: s.root for s in (UNDERLYING_REGISTRY["PETR4"], UNDERLYING_REGISTRY["ABEV3"])}
    steps = {s.root: s.strike_step for s in (UNDERLYING_REGISTRY["PETR4"], UNDERLYING_REGISTRY["ABEV3"])}
    pattern = re.compile(r"^([A-Z]{4})([A-X])(\d+)(W[1245])?$")
    for row in opts.itertuples(index=False):
        mt = pattern.match(row.ticker)
        assert mt, row.ticker
        root, letter, code, _ = mt.groups()
        assert root == roots[row.isin] == row.company
        is_call = row.market_type == "070"
        assert row.bdi_code == ("78" if is_call else "82")
        assert letter == (CALL_LETTERS if is_call else PUT_LETTERS)[row.expiry.month - 1]
        assert int(code) == round(row.strike * strike_code_multiplier(steps[root]))
    # a ticker always means the same series
    assert opts.groupby("ticker")[["strike", "expiry", "isin"]].nunique().max().max() == 1


def test_expiries_follow_b3_rule(truth: pd.DataFrame) -> None:
    monthly = truth[truth["week"] == 0]["expiry"].dt.date.unique()
    for e in monthly:
        assert e == monthly_option_expiry(e.year, e.month)
    weekly = truth[truth["week"] > 0][["expiry", "week", "ticker"]].drop_duplicates(["expiry", "week"])
    assert set(weekly["week"]) <= {1, 2, 4, 5} and len(weekly) >= 2
    for e, wk, ticker in weekly.itertuples(index=False):
        friday = third_weekday(e.year, e.month, 4) + dt.timedelta(days=7 * (wk - 3))
        assert friday.month == e.month and e.date() <= friday and (friday - e.date()).days < 7
        assert business_days(e.date(), friday) == 0  # the Friday or the session before a holiday
        assert ticker.endswith(f"W{wk}")
    assert (truth["trade_date"] < truth["expiry"]).all()


def test_series_stay_listed_until_expiry(truth: pd.DataFrame) -> None:
    days = np.sort(truth["trade_date"].unique())
    pos = {d: i for i, d in enumerate(days)}
    for _, g in truth.groupby("ticker"):
        idx = np.array([pos[d] for d in g["trade_date"]])
        assert (np.diff(np.sort(idx)) == 1).all()  # contiguous
        last_day = days[idx.max()]
        expiry = g["expiry"].iloc[0]
        assert idx.max() == len(days) - 1 or business_days(last_day, expiry) == 1


def test_truth_matches_file(truth: pd.DataFrame, quotes: pd.DataFrame) -> None:
    opts = quotes[quotes["market_type"].isin(["070", "080"])].set_index(["trade_date", "ticker"])
    traded = truth[truth["in_file"]].set_index(["trade_date", "ticker"])
    assert set(traded.index) == set(opts.index)
    j = traded.join(opts, rsuffix="_file")
    for c in ("close", "best_bid", "best_ask", "strike"):
        np.testing.assert_allclose(j[c], j[f"{c}_file"], atol=1e-9)
    assert (j["isin"] == j["isin_file"]).all()


def test_cdi_covers_every_session(market_dir) -> None:
    out, m, _ = market_dir
    cdi = pd.read_csv(out / CDI_FILE)
    assert list(cdi.columns) == ["date", "cdi_annual_pct"]
    assert cdi["date"].tolist() == [f"{d:%Y-%m-%d}" for d in sessions(m.start, m.end)]
    assert cdi["cdi_annual_pct"].between(10, 15).all()
    long = simulate_market(SampleMarketConfig(n_days=250, underlyings=("PETR4",)))
    steps = np.diff(long.cdi)
    assert 3 <= (steps != 0).sum() <= 9  # COPOM-like: a few moves a year
    assert np.allclose(steps[steps != 0] * 4, np.round(steps[steps != 0] * 4))  # 25 bp multiples


# --- ground truth -----------------------------------------------------------------------------------


def test_truth_prices_are_free_of_static_arbitrage(truth: pd.DataFrame) -> None:
    t = truth
    disc_k = t["strike"] * np.exp(-t["rate"] * t["t"])
    call, put = t["option_type"] == "C", t["option_type"] == "P"
    tol = 1e-10 * t["spot"]
    assert (t.loc[call, "true_mid"] >= np.maximum(t["spot"] - disc_k, 0)[call] - tol[call]).all()
    assert (t.loc[call, "true_mid"] <= t.loc[call, "spot"]).all()
    assert (t.loc[put, "true_mid"] >= np.maximum(disc_k - t["spot"], 0)[put] - tol[put]).all()
    assert (t.loc[put, "true_mid"] <= disc_k[put] + tol[put]).all()
    checked = 0
    for (_, _, _, typ), g in t.groupby(["trade_date", "underlying_ticker", "expiry", "option_type"]):
        g = g.sort_values("strike")
        k, c = g["strike"].to_numpy(), g["true_mid"].to_numpy()
        slope = np.diff(c) / np.diff(k)
        eps = 1e-9
        if typ == "C":
            assert (slope <= eps).all() and (slope >= -1 - eps).all()
        else:
            assert (slope >= -eps).all() and (slope <= 1 + eps).all()
        assert (np.diff(slope) >= -1e-8).all()  # convex in strike
        checked += 1
    assert checked > 20
    # put-call parity on the same strike and expiry
    key = ["trade_date", "underlying_ticker", "expiry", "strike"]
    pv = t.pivot_table(index=key, columns="option_type", values="true_mid")
    first = t.drop_duplicates(key).set_index(key).loc[pv.index]
    strikes = first.index.get_level_values("strike")
    parity = first["spot"] - strikes * np.exp(-first["rate"] * first["t"])
    np.testing.assert_allclose(pv["C"] - pv["P"], parity, atol=1e-9)


def test_surface_has_no_calendar_arbitrage(market_dir) -> None:
    """Total variance at fixed log-moneyness never decreases with maturity for any stored state."""
    s = pd.read_parquet(market_dir[1].truth_path("surface_params"))
    p = DynParams.from_specs(CONFIG.specs(), CONFIG.equity_premium)
    u = s["underlying_ticker"].map({x.ticker: i for i, x in enumerate(CONFIG.specs())}).to_numpy()
    pu = DynParams(**{f: (v if f == "erp" else v[:, None, None]) for f, v in p.take(u).__dict__.items()})
    taus = np.linspace(1, 400, 120)[None, None, :] / 252
    k = np.linspace(-1.0, 1.0, 41)[None, :, None]
    theta = atm_total_variance(taus, s["v"].to_numpy()[:, None, None], pu)
    rho, eta = ssvi_rho_eta(s["z"].to_numpy(), p.take(u))
    phi = ssvi_phi(theta, eta[:, None, None], pu.gamma)
    w = ssvi_total_variance(k, theta, rho[:, None, None], phi)
    assert (np.diff(w, axis=2) >= -1e-14).all()
    np.testing.assert_allclose(s["rho"], rho)


def test_true_iv_is_the_implied_vol_of_the_mid(truth: pd.DataFrame) -> None:
    t = truth
    otm = np.where(t["option_type"] == "C", t["k"] >= 0, t["k"] < 0)
    sel = t[otm & (t["true_mid"] > 1e-4)]  # enough time value for a well-posed inversion
    assert len(sel) > 500
    try:
        from b3quant_models.pricing import implied_vol
    except ImportError:  # pragma: no cover - fallback while pricing is absent
        implied_vol = _bisection_iv
    is_call = sel["option_type"] == "C"
    iv = implied_vol(sel["true_mid"], sel["spot"], sel["strike"], sel["t"], sel["rate"], is_call)
    iv = np.asarray(iv, float)
    assert np.isfinite(iv).all()
    np.testing.assert_allclose(iv, sel["true_iv"], rtol=0, atol=1e-6)


def _bisection_iv(price, spot, strike, t, r, is_call) -> np.ndarray:
    from b3quant_models.sample_market.dynamics import bs_price

    args = [np.asarray(a, float) for a in (price, spot, strike, t, r)]
    price, spot, strike, t, r = args
    lo, hi = np.full_like(price, 1e-4), np.full_like(price, 5.0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        too_high = bs_price(spot, strike, t, r, mid, np.asarray(is_call))[0] > price
        hi, lo = np.where(too_high, mid, hi), np.where(too_high, lo, mid)
    return 0.5 * (lo + hi)


def test_true_iv_is_the_surface_at_the_stored_state(truth: pd.DataFrame, market_dir) -> None:
    s = pd.read_parquet(market_dir[1].truth_path("surface_params"))
    j = truth.merge(s[["trade_date", "underlying_ticker", "v", "z"]], on=["trade_date", "underlying_ticker"])
    p = DynParams.from_specs(CONFIG.specs(), CONFIG.equity_premium)
    u = j["underlying_ticker"].map({x.ticker: i for i, x in enumerate(CONFIG.specs())}).to_numpy()
    iv = surface_iv(j["k"], j["t"], j["v"], j["z"], p.take(u))
    np.testing.assert_allclose(iv, j["true_iv"], rtol=1e-12)
    np.testing.assert_allclose(j["t"], j["bdays"] / 252)
    np.testing.assert_allclose(j["forward"], j["spot"] * np.exp(j["rate"] * j["t"]))


def test_iv_next_true_is_tomorrows_truth(truth: pd.DataFrame) -> None:
    days = np.sort(truth["trade_date"].unique())
    nxt = dict(itertools.pairwise(days))
    t = truth.dropna(subset=["iv_next_true"])
    assert len(t) > 0.8 * truth["trade_date"].lt(days[-1]).sum()
    tomorrow = truth.set_index(["trade_date", "ticker"])["true_iv"]
    keys = list(zip(t["trade_date"].map(nxt), t["ticker"], strict=True))
    np.testing.assert_array_equal(tomorrow.loc[keys].to_numpy(), t["iv_next_true"].to_numpy())
    last = truth[truth["trade_date"] == days[-1]]
    assert last["iv_next_true"].isna().all() and last["iv_next_optimal"].notna().any()
    assert truth.loc[truth["bdays"] == 1, "iv_next_optimal"].isna().all()


def test_optimal_forecast_matches_monte_carlo(market_dir) -> None:
    """The stored E[IV_{t+1}] equals a brute-force simulation of the generator's own step."""
    m = market_dir[1]
    s = pd.read_parquet(m.truth_path("surface_params"))
    truth = pd.read_parquet(m.truth_path("option_iv"))
    specs = CONFIG.specs()
    p = DynParams.from_specs(specs, CONFIG.equity_premium)
    day = s["trade_date"].unique()[5]
    rng = np.random.default_rng(123)
    n = 200_000
    for u, spec in enumerate(specs):
        st = s[(s["trade_date"] == day) & (s["underlying_ticker"] == spec.ticker)].iloc[0]
        rows = truth[(truth["trade_date"] == day) & (truth["underlying_ticker"] == spec.ticker)]
        rows = rows[rows["bdays"] >= 2].sort_values("k").iloc[:: max(1, len(rows) // 6)]
        r_next = float(rows["rate"].iloc[0])  # CDI constant over these sessions in this config
        pu = p.take(np.array([u]))
        sh = rng.standard_normal((4, n))
        s1, v1, z1, *_ = step_from_shocks(st["spot"], st["v"], st["z"], st["rate"], sh[0], sh[1], sh[2],
                                          rng.random(n), sh[3], pu)
        for row in rows.itertuples(index=False):
            tau = (row.bdays - 1) / 252
            iv = surface_iv(np.log(row.strike / (s1 * np.exp(r_next * tau))), tau, v1, z1, pu)
            se = iv.std() / np.sqrt(n)
            assert abs(iv.mean() - row.iv_next_optimal) < 4 * se + 2e-4, (row.ticker, iv.mean(), se)
        # and the quadrature evaluated through the public helpers agrees with the stored column
        nodes = next_day_nodes(np.array([st["spot"]]), np.array([st["v"]]), np.array([st["z"]]),
                               np.array([st["rate"]]), pu)
        tau_n = (rows["bdays"].to_numpy() - 1) / 252
        fc = expected_next_iv(np.log(rows["strike"].to_numpy()), tau_n, np.full(len(rows), r_next),
                              np.arange(len(rows)), np.zeros(len(rows), int), tau_n, nodes, pu)
        np.testing.assert_allclose(fc, rows["iv_next_optimal"], rtol=1e-12)


# --- reproducibility --------------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path, market_dir) -> None:
    out, m, _ = market_dir
    again = generate_sample_market(tmp_path / "again", CONFIG)
    assert again.sha256 == m.sha256
    assert (tmp_path / "again" / "manifest.json").read_bytes() != b""
    for f in m.cotahist_files:
        assert (out / f).read_bytes() == (tmp_path / "again" / f).read_bytes()
    other_cfg = SampleMarketConfig(n_days=15, underlyings=("PETR4", "ABEV3"), seed=8)
    other = generate_sample_market(tmp_path / "other", other_cfg)
    differing = [f for f in m.cotahist_files if other.sha256[f] != m.sha256[f]]
    assert len(differing) >= len(m.cotahist_files) - 1  # the first session may only differ in trades


def test_regeneration_removes_stale_files(tmp_path: Path) -> None:
    generate_sample_market(tmp_path, SampleMarketConfig(n_days=4, underlyings=("ABEV3",)))
    m = generate_sample_market(tmp_path, SampleMarketConfig(n_days=2, underlyings=("ABEV3",)))
    assert sorted(p.name for p in tmp_path.glob("COTAHIST_*")) == sorted(m.cotahist_files)


def test_shorter_market_is_a_prefix_of_a_longer_one(sessions_written) -> None:
    short = list(iter_sessions(simulate_market(SampleMarketConfig(n_days=4, underlyings=("PETR4", "ABEV3")))))
    for a, b in zip(short, sessions_written, strict=False):
        pd.testing.assert_frame_equal(a.quotes, b.quotes)


def test_calendar_eras_weeklies_and_monday_expiries() -> None:
    """Before 2024 there are no weekly series; before May 2021 monthly expiries are third Mondays."""
    cfg = SampleMarketConfig(start=dt.date(2021, 2, 1), n_days=3, underlyings=("VALE3",))
    q = pd.concat([s.quotes for s in iter_sessions(simulate_market(cfg))])
    opts = q[q["market_type"] != "010"]
    assert not opts["ticker"].str.contains("W").any()
    expiries = {pd.Timestamp(e).date() for e in opts["expiry"]}
    # Feb 15 2021 (third Monday) was Carnival: the previous session; Mar 15 2021 is a third Monday
    assert {dt.date(2021, 2, 12), dt.date(2021, 3, 15)} <= expiries
    assert all(e == monthly_option_expiry(e.year, e.month) for e in expiries)
