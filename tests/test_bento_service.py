"""The BentoML service through its ASGI app (and once as a real `bentoml serve` process).

A small sample market is run through the Dagster pipeline once per module, so the service reads the
same tables production does. Skew tests compare the service with the library's batch path exactly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from _pipeline import run_sample_pipeline
from starlette.testclient import TestClient

from b3quant_models.calendar import previous_session
from b3quant_models.features import FEATURE_COLUMNS, build_option_features, build_targets
from b3quant_models.pricing import greeks, implied_vol_with_reason

ROOT = Path(__file__).resolve().parents[1]
GREEKS = ("delta", "gamma", "vega", "theta", "rho")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def market_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 sessions x 2 underlyings through the real pipeline (~12 s, once per module)."""
    run = run_sample_pipeline(tmp_path_factory.mktemp("bento_market"), seed=5, log_level="WARNING")
    assert run.summary.ok, run.summary.render()
    return run.db


def _read(db: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchdf()


@pytest.fixture(scope="module")
def tables(market_db: Path) -> dict[str, pd.DataFrame]:
    names = ("option_iv", "iv_surface", "surface_grid_points", "underlying_quotes", "risk_free_rate")
    return {n: _read(market_db, f"SELECT * FROM b3.{n}") for n in names}


@pytest.fixture(scope="module")
def last_day(tables) -> dt.date:
    return tables["option_iv"]["trade_date"].max().date()


@pytest.fixture(scope="module")
def empty_model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point BentoML at an empty model store so the baseline path is deterministic."""
    with _model_store(tmp_path_factory.mktemp("bentoml_models")) as p:
        yield p


@contextlib.contextmanager
def _model_store(path: Path) -> Iterator[Path]:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    BentoMLContainer.model_store.set(ModelStore(str(path)))
    try:
        yield path
    finally:
        BentoMLContainer.model_store.reset()


@pytest.fixture(scope="module")
def client(market_db: Path, empty_model_store: Path) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("B3Q_DUCKDB_PATH", str(market_db))
    try:
        with TestClient(_app()) as c:
            yield c
    finally:
        mp.undo()


def _app():
    """A fresh ASGI app of the service (metrics off: Prometheus collectors are process-global, and the
    real-server test covers /metrics)."""
    from _bentoml_impl.server.app import ServiceAppFactory

    from bento.service import B3QuantService

    B3QuantService.inject_config()
    return ServiceAppFactory(B3QuantService, is_main=True, enable_metrics=False)()


def _errors(resp: httpx.Response) -> str:
    """The error text of a 4xx (every error body is {"error": ..., "detail": [...] or null})."""
    return json.dumps(resp.json())


def _locs(resp: httpx.Response) -> list[list]:
    return [d["loc"] for d in resp.json()["detail"]]


def _row(**kw) -> dict:
    base = {"price": 1.0, "spot": 30.0, "strike": 31.0, "option_type": "call", "expiry": "2025-06-20"}
    return {**base, **kw}


# ------------------------------------------------------------------------------------------ health
def test_health_readiness_and_openapi(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/docs.json").json()
    assert {"/implied_vol", "/surface", "/predict_iv", "/readyz"} <= set(spec["paths"])
    assert client.get("/docs", follow_redirects=False).status_code in (301, 302, 307, 308)
    assert "swagger" in client.get("/docs").text.lower()


def test_not_ready_without_database(tmp_path: Path, empty_model_store: Path, monkeypatch) -> None:
    monkeypatch.setenv("B3Q_DUCKDB_PATH", str(tmp_path / "missing.duckdb"))
    with TestClient(_app()) as c:
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 503
        # Fully specified rows need no stored data ...
        ok = c.post("/implied_vol", json={"rows": [_row(trade_date="2025-03-10", rate=0.1)]})
        assert ok.status_code == 200 and ok.json()[0]["reason"] == "ok"
        # ... defaults do, and the 422 (schema-valid, data missing) says which field to pass.
        bad = c.post("/implied_vol", json={"rows": [_row()]})
        assert bad.status_code == 422
        assert "DuckDB file not found" in _errors(bad) and "rate" in _errors(bad)
        assert c.post("/surface", json={"underlying": "PETR4"}).status_code == 503


# ------------------------------------------------------------------------------------------ implied_vol
def test_implied_vol_matches_stored_option_iv_exactly(client: TestClient, tables) -> None:
    """Skew test: the service's IVs/Greeks for stored quotes are bit-identical to compute_option_iv's."""
    iv = tables["option_iv"]
    ok = iv[iv["iv_reason"] == "ok"].sample(300, random_state=0)
    price = np.where(ok["iv_source"] == "mid", ok["price_mid"], ok["price_close"])
    rows = [
        {"price": float(p), "spot": float(r.spot), "strike": float(r.strike), "option_type": r.option_type,
         "expiry": str(r.expiry.date()), "trade_date": str(r.trade_date.date()), "rate": float(r.r)}
        for p, r in zip(price, ok.itertuples(), strict=True)
    ]
    resp = client.post("/implied_vol", json={"rows": rows})
    assert resp.status_code == 200, resp.text
    out = pd.DataFrame(resp.json())
    assert (out["reason"] == "ok").all()
    np.testing.assert_array_equal(out["iv"].to_numpy(float), ok["iv"].to_numpy())
    np.testing.assert_array_equal(out["bdays"].to_numpy(), ok["bdays"].to_numpy())
    np.testing.assert_array_equal(out["t"].to_numpy(), ok["t"].to_numpy())
    np.testing.assert_array_equal(out["k"].to_numpy(), ok["k"].to_numpy())
    for g in GREEKS:
        np.testing.assert_array_equal(out[g].to_numpy(float), ok[g].to_numpy(), err_msg=g)


def test_implied_vol_defaults_t_input_and_solver_reasons(client: TestClient, tables, last_day) -> None:
    rate = tables["risk_free_rate"].set_index("trade_date")["r_cont"][pd.Timestamp(last_day)]
    rows = [
        _row(price=2.0),  # defaults: latest stored day and its rate
        _row(price=2.0, expiry=None, t=0.25),  # t given instead of expiry
        _row(price=0.001, strike=60.0, option_type="put"),  # a put far ITM below intrinsic
    ]
    resp = client.post("/implied_vol", json={"rows": rows})
    assert resp.status_code == 200, resp.text
    a, b, c = resp.json()
    assert a["trade_date"] == str(last_day) and a["rate"] == rate and a["reason"] == "ok"
    assert a["bdays"] > 0 and a["t"] == a["bdays"] / 252
    ref_iv, ref_code = implied_vol_with_reason(2.0, 30.0, 31.0, 0.25, rate, True)
    assert int(ref_code) == 0
    ref_g = greeks(30.0, 31.0, 0.25, rate, ref_iv, True)
    assert b["iv"] == float(ref_iv) and b["bdays"] is None and b["t"] == 0.25
    assert all(b[g] == float(ref_g[g]) for g in GREEKS)
    assert c["reason"] == "below_intrinsic" and c["iv"] is None and c["delta"] is None


@pytest.mark.parametrize(
    ("row", "field", "text", "status"),
    [
        ({"spot": 30.0, "strike": 31.0, "option_type": "call", "expiry": "2025-06-20"}, "price", "missing", 400),
        (_row(strike=-5.0), "strike", "greater than 0", 400),
        (_row(strike=0.0), "strike", "greater than 0", 400),
        (_row(price=0.0), "price", "greater than 0", 400),
        (_row(spot=-1.0), "spot", "greater than 0", 400),
        (_row(option_type="straddle"), "option_type", "call", 400),
        (_row(trade_date="2025-03-08"), "trade_date", "not a B3 trading session", 422),  # a Saturday
        (_row(trade_date="2025-03-04"), "trade_date", "not a B3 trading session", 422),  # Carnival
        (_row(trade_date="2025-03-12", expiry="2025-03-12", rate=0.1), None, "expired contract", 422),
        (_row(trade_date="2025-03-12", expiry="2025-03-10", rate=0.1), None, "expired contract", 422),
        (_row(t=0.1), None, "exactly one of 'expiry' and 't'", 400),
        (_row(expiry="2040-06-15"), "expiry", "beyond the B3 calendar", 422),
        (_row(rate=float("nan")), None, "", 400),
        (_row(trade_date="2024-01-02"), None, "no stored risk-free rate for trade_date 2024-01-02", 422),
        (_row(extra_field=1), "extra_field", "not permitted", 400),
    ],
)
def test_implied_vol_bad_rows_are_4xx_naming_field_and_index(client: TestClient, row, field, text, status) -> None:
    """400: the row contradicts the schema; 422: schema-valid but against the calendar or stored data."""
    body = json.dumps({"rows": [_row(price=2.0), row]}).replace("NaN", '"nan"')
    resp = client.post("/implied_vol", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    locs = _locs(resp)
    assert all(loc[:2] == ["rows", 1] for loc in locs), locs  # row 0 is fine; row 1 is named
    if field is not None:
        assert any(loc[-1] == field for loc in locs), locs
    assert text in _errors(resp)


def test_implied_vol_rejects_empty_and_oversize_batches(client: TestClient) -> None:
    from bento.schemas import MAX_ROWS

    assert client.post("/implied_vol", json={"rows": []}).status_code == 400
    resp = client.post("/implied_vol", json={"rows": [_row()] * (MAX_ROWS + 1)})
    assert resp.status_code == 400
    assert _locs(resp)[0] == ["rows"] and f"at most {MAX_ROWS}" in _errors(resp)
    assert client.post("/implied_vol", json={"row": [_row()]}).status_code == 400  # misspelt field


def test_implied_vol_not_json_is_4xx(client: TestClient) -> None:
    resp = client.post("/implied_vol", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500


# ------------------------------------------------------------------------------------------ surface
def test_surface_returns_stored_slices_and_grid(client: TestClient, tables, last_day) -> None:
    resp = client.post("/surface", json={"underlying": "petr4"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["underlying"] == "PETR4" and body["trade_date"] == str(last_day)
    s = tables["iv_surface"]
    s = s[(s["trade_date"].dt.date == last_day) & (s["underlying_ticker"] == "PETR4")].sort_values("expiry")
    assert [x["expiry"] for x in body["slices"]] == [str(d.date()) for d in s["expiry"]]
    fitted = [x for x in body["slices"] if x["status"] == "ok"]
    assert fitted and all(x["a"] is not None and x["sigma"] > 0 for x in fitted)
    ok = s[s["status"] == "ok"]
    assert [x["b"] for x in fitted] == ok["b"].tolist()
    g = tables["surface_grid_points"]
    g = g[(g["trade_date"].dt.date == last_day) & (g["underlying_ticker"] == "PETR4")]
    assert len(body["grid"]) == len(g) == 25
    first_day = tables["option_iv"]["trade_date"].min().date()
    older = client.post("/surface", json={"underlying": "VALE3", "trade_date": str(first_day)})
    assert older.status_code == 200 and older.json()["trade_date"] == str(first_day)


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"underlying": "XXXX4"}, 404, "underlying 'XXXX4' has no surface"),
        ({"underlying": "PETR4", "trade_date": "2025-01-02"}, 404, "trade_date 2025-01-02 is not stored"),
        ({"underlying": "PETR4", "trade_date": "2025-03-09"}, 422, "not a B3 trading session"),
        ({"underlying": ""}, 400, "underlying"),
        ({}, 400, "underlying"),
    ],
)
def test_surface_errors(client: TestClient, body, status, text) -> None:
    resp = client.post("/surface", json=body)
    assert resp.status_code == status, resp.text
    assert text in _errors(resp)


# ------------------------------------------------------------------------------------------ predict_iv
def _contracts(tables, day: dt.date, n: int | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Stored valid rows of ``day`` and the same quotes as a predict_iv request (no ticker, no iv)."""
    iv = tables["option_iv"]
    rows = iv[(iv["trade_date"].dt.date == day) & (iv["iv_reason"] == "ok")].sort_values("ticker")
    if n is not None:
        rows = rows.head(n)

    def opt(v):
        return None if pd.isna(v) else float(v)

    req = [
        {"underlying": r.underlying_ticker, "option_type": r.option_type, "strike": float(r.strike),
         "expiry": str(r.expiry.date()), "price": opt(r.price_close), "best_bid": opt(r.best_bid),
         "best_ask": opt(r.best_ask), "volume": opt(r.volume), "trades": int(r.trades)}
        for r in rows.itertuples()
    ]
    return rows.reset_index(drop=True), req


def test_predict_iv_baseline_says_so(client: TestClient, tables, last_day) -> None:
    rows, req = _contracts(tables, last_day, 20)
    resp = client.post("/predict_iv", json={"contracts": req})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "persistence-baseline" and "persistence baseline" in body["note"]
    assert body["trade_date"] == str(last_day) and body["target_date"] > body["trade_date"]
    p = pd.DataFrame(body["predictions"])
    assert p["ticker"].tolist() == rows["ticker"].tolist()  # matched to the stored series
    np.testing.assert_array_equal(p["iv_today"].to_numpy(float), rows["iv"].to_numpy())
    np.testing.assert_array_equal(p["iv_next"].to_numpy(float), rows["iv"].to_numpy())
    assert (p["reason"] == "ok").all()


def test_predict_iv_given_iv_and_unsolvable_rows(client: TestClient) -> None:
    req = [
        {"underlying": "PETR4", "option_type": "call", "strike": 40.0, "expiry": "2025-06-20", "iv": 0.31},
        {"underlying": "PETR4", "option_type": "put", "strike": 400.0, "expiry": "2025-06-20", "price": 0.01},
    ]
    resp = client.post("/predict_iv", json={"contracts": req})
    assert resp.status_code == 200, resp.text
    a, b = resp.json()["predictions"]
    assert a["iv_today"] == 0.31 and a["iv_next"] == 0.31 and a["iv_source"] == "given" and a["ticker"] is None
    assert b["iv_next"] is None and b["reason"] != "ok"


@pytest.mark.parametrize(
    ("contract", "status", "text"),
    [
        ({"underlying": "XXXX4"}, 404, "contracts[1].underlying: 'XXXX4' has no stored options"),
        ({"expiry": "2025-03-10"}, 422, "contracts[1].expiry: expired contract"),
        ({"strike": -40.0}, 400, "strike"),
        ({"expiry": "2040-06-15"}, 422, "beyond the B3 calendar"),
        ({"iv": None, "price": None}, 400, "give today's 'iv'"),
        ({"iv": None, "price": None, "best_bid": 2.0, "best_ask": 1.0}, 422, "best_ask 1.0 < best_bid 2.0"),
        ({"option_type": "C"}, 400, "option_type"),
    ],
)
def test_predict_iv_bad_contracts(client: TestClient, contract, status, text) -> None:
    good = {"underlying": "PETR4", "option_type": "call", "strike": 40.0, "expiry": "2025-06-20", "iv": 0.3}
    bad = {k: v for k, v in {**good, **contract}.items() if v is not None}
    resp = client.post("/predict_iv", json={"contracts": [good, bad]})
    assert resp.status_code == status, resp.text
    assert text in _errors(resp)
    if status in (400, 422) and resp.json()["detail"]:
        assert all(loc[:2] == ["contracts", 1] for loc in _locs(resp))


def test_predict_iv_request_level_errors(client: TestClient, tables, last_day) -> None:
    good = {"underlying": "PETR4", "option_type": "call", "strike": 40.0, "expiry": "2025-06-20", "iv": 0.3}
    r = client.post("/predict_iv", json={"contracts": [good], "trade_date": "2025-03-08"})
    assert r.status_code == 422 and "not a B3 trading session" in _errors(r)
    r = client.post("/predict_iv", json={"contracts": [good], "trade_date": str(previous_session(dt.date(2025, 3, 6)))})
    assert r.status_code == 404 and "is not stored" in _errors(r)
    r = client.post("/predict_iv", json={"contracts": [good, {**good, "strike": 41.0}]})
    assert r.status_code == 200  # new contracts without tickers are distinct series
    r = client.post("/predict_iv", json={"contracts": [{**good, "ticker": "PETRX1"}, {**good, "ticker": "PETRX1"}]})
    assert r.status_code == 422 and "contracts[1]: duplicate contract" in _errors(r)
    from bento.schemas import MAX_ROWS

    r = client.post("/predict_iv", json={"contracts": [good] * (MAX_ROWS + 1)})
    assert r.status_code == 400 and f"at most {MAX_ROWS}" in _errors(r)


def test_predict_iv_with_promoted_model_equals_batch_path(market_db: Path, tables, last_day, tmp_path: Path,
                                                          monkeypatch) -> None:
    """Skew test: a promoted LightGBM model served through the service gives the batch predictions."""
    from b3quant_models.models import LightGBMModel, promotion
    from bento import forecast

    feats = build_option_features(tables["option_iv"], tables["iv_surface"], tables["underlying_quotes"])
    targets = build_targets(tables["option_iv"])
    train = feats.merge(targets[["trade_date", "ticker", "iv_next"]], on=["trade_date", "ticker"])
    model = LightGBMModel({"n_estimators": 20, "num_leaves": 7}, features=FEATURE_COLUMNS, n_jobs=1)
    model.fit(train, train["iv_next"])
    model_dir = model.save(tmp_path / "lgbm")
    batch = feats[feats["trade_date"].dt.date == last_day].reset_index(drop=True)
    batch_pred = model.predict(batch)

    with _model_store(tmp_path / "store"):
        tag = promotion.promote(model_dir)
        assert promotion.promoted_tag() == tag
        monkeypatch.setenv("B3Q_DUCKDB_PATH", str(market_db))
        rows, req = _contracts(tables, last_day)
        with TestClient(_app()) as c:
            resp = c.post("/predict_iv", json={"contracts": req})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model_version"] == tag and body["model_name"] == "lightgbm" and body["note"] is None

        # Feature rows built for the request equal the batch feature table's rows of that day ...
        from bento.schemas import ForecastRow
        from bento.store import get_store

        rate = float(tables["option_iv"].loc[tables["option_iv"]["trade_date"].dt.date == last_day, "r"].iloc[0])
        _, served = forecast.forecast_features(get_store(), [ForecastRow(**x) for x in req], last_day, rate,
                                               forecast.lookbacks_for(model))
        served = served.sort_values("ticker").reset_index(drop=True)
        expect = batch.set_index("ticker").loc[served["ticker"]].reset_index()
        pd.testing.assert_frame_equal(served[FEATURE_COLUMNS], expect[FEATURE_COLUMNS], check_exact=True)

    # ... and so do the predictions, row by row.
    got = pd.DataFrame(body["predictions"]).set_index("ticker")["iv_next"]
    want = pd.Series(batch_pred, index=batch["ticker"])
    assert set(got.index) == set(rows["ticker"]) == set(want.index)
    np.testing.assert_array_equal(got.loc[want.index].to_numpy(float), want.to_numpy())
    assert not np.array_equal(want.to_numpy(), batch["iv"].to_numpy())  # a real model, not persistence


def test_predict_iv_with_promoted_history_model_equals_batch_path(market_db: Path, tables, last_day,
                                                                  tmp_path: Path, monkeypatch) -> None:
    """A model that reads each series' history (series_ar), promoted and served, gives the batch predictions:
    the service passes the stored history of the live series plus the request's rows."""
    from b3quant_models.features.history import SeriesHistory
    from b3quant_models.models import SeriesARModel, promotion

    feats = build_option_features(tables["option_iv"], tables["iv_surface"], tables["underlying_quotes"])
    targets = build_targets(tables["option_iv"])
    train = feats.merge(targets[["trade_date", "ticker", "iv_next"]], on=["trade_date", "ticker"])
    history = SeriesHistory.from_rows(feats)
    model = SeriesARModel({"lags": 3, "alpha": 0.1}).fit(train, train["iv_next"], history=history)
    batch = feats[feats["trade_date"].dt.date == last_day].reset_index(drop=True)
    batch_pred = model.predict(batch, history=history)
    assert not np.array_equal(batch_pred, batch["iv"].to_numpy())

    with _model_store(tmp_path / "store"):
        tag = promotion.promote(model.save(tmp_path / "ar"))
        monkeypatch.setenv("B3Q_DUCKDB_PATH", str(market_db))
        rows, req = _contracts(tables, last_day)
        with TestClient(_app()) as c:
            resp = c.post("/predict_iv", json={"contracts": req})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model_version"] == tag and body["model_name"] == "series_ar"
    got = pd.DataFrame(body["predictions"]).set_index("ticker")["iv_next"]
    want = pd.Series(batch_pred, index=batch["ticker"])
    assert set(got.index) == set(rows["ticker"]) == set(want.index)
    np.testing.assert_array_equal(got.loc[want.index].to_numpy(float), want.to_numpy())


def test_predict_iv_with_promoted_torch_model_equals_batch_path(market_db: Path, tables, last_day,
                                                                tmp_path: Path, monkeypatch) -> None:
    """A (tiny) promoted torch grid model, per option through the grid, served on CPU: the service attaches
    the stored grids to the series history and gives the batch predictions exactly."""
    pytest.importorskip("torch")
    from b3quant_models.features.history import SeriesHistory, grid_history
    from b3quant_models.models import make_model, promotion

    feats = build_option_features(tables["option_iv"], tables["iv_surface"], tables["underlying_quotes"])
    targets = build_targets(tables["option_iv"])
    train = feats.merge(targets[["trade_date", "ticker", "iv_next", "target_date"]], on=["trade_date", "ticker"])
    history = SeriesHistory.from_rows(feats).with_grid(grid_history(tables["surface_grid_points"]))
    model = make_model("gru", {"lookback": 3, "hidden": 8, "max_epochs": 3, "device": "cpu"}, features=FEATURE_COLUMNS)
    model.fit(train, train["iv_next"], history=history)
    batch = feats[feats["trade_date"].dt.date == last_day].reset_index(drop=True)
    batch_pred = model.predict(batch, history=history)
    assert model.last_fallback_rows == 0 and not np.array_equal(batch_pred, batch["iv"].to_numpy())

    with _model_store(tmp_path / "store"):
        tag = promotion.promote(model.save(tmp_path / "gru"))
        monkeypatch.setenv("B3Q_DUCKDB_PATH", str(market_db))
        rows, req = _contracts(tables, last_day)
        with TestClient(_app()) as c:
            resp = c.post("/predict_iv", json={"contracts": req})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model_version"] == tag and body["model_name"] == "gru"
    got = pd.DataFrame(body["predictions"]).set_index("ticker")["iv_next"]
    want = pd.Series(batch_pred, index=batch["ticker"])
    assert set(got.index) == set(rows["ticker"]) == set(want.index)
    np.testing.assert_array_equal(got.loc[want.index].to_numpy(float), want.to_numpy())


def _request_rows(tables, day: dt.date) -> list[dict]:
    """A mixed predict_iv request for ``day``: stored quotes as they are, stored series with another quote,
    a given IV, and contracts that were never listed (no history), on both underlyings."""
    _, stored = _contracts(tables, day)
    same = stored[::3]
    bumped = [{**c, "price": round(c["price"] + 0.05, 2)} for c in stored[1::6] if c["price"]]
    given = [{**stored[2], "iv": 0.37}]
    expiry = max(c["expiry"] for c in stored)
    new = [{"underlying": u, "option_type": o, "strike": k, "expiry": expiry, "price": 1.5}
           for u, o, k in (("PETR4", "call", 37.77), ("VALE3", "put", 51.11))]
    return same + bumped + given + new


@pytest.mark.parametrize("reuse", [True, False], ids=["stored-features", "general-path"])
@pytest.mark.parametrize("days_back", [0, 3])
def test_predict_iv_features_equal_batch_table_with_the_request_rows(market_db: Path, tables, reuse: bool,
                                                                      days_back: int) -> None:
    """Skew test for any request: the served feature rows equal build_option_features over the stored
    tables with the request's option_iv rows in place of that day's stored rows of the same series, both
    through the precomputed stored-series features and the general path."""
    import dataclasses

    from b3quant_models.features import build_option_features
    from b3quant_models.features.day_context import load_day_context
    from bento import forecast
    from bento.schemas import ForecastRow
    from bento.store import MarketStore

    store = MarketStore(market_db)
    snap = store.snapshot()
    day = snap.days[-1 - days_back]
    with store.session() as db:
        ctx = load_day_context(db, day, (5, 10, 21))
    if not reuse:
        ctx = dataclasses.replace(ctx, stored_quotes={})
    rows = [ForecastRow(**x) for x in _request_rows(tables, day)]
    req, served = forecast.forecast_features(store, rows, day, snap.rates[day], (5, 10, 21), context=ctx)
    n_stored = len(_contracts(tables, day)[1][::3])
    assert ctx.stored_hits(req).tolist() == [reuse] * n_stored + [False] * (len(rows) - n_stored)

    iv = tables["option_iv"]
    replaced = (iv["trade_date"].dt.date == day) & iv["ticker"].isin(req["ticker"])
    option_iv = pd.concat([iv[~replaced], req[iv.columns]], ignore_index=True)
    batch = build_option_features(option_iv, tables["iv_surface"], tables["underlying_quotes"])
    batch = batch[(batch["trade_date"].dt.date == day) & batch["ticker"].isin(req["ticker"])]
    assert not req["ticker"].duplicated().any()
    assert len(served) == len(batch) == (req["iv_reason"] == "ok").sum() > 10
    pd.testing.assert_frame_equal(served.reset_index(drop=True), batch.reset_index(drop=True), check_exact=True)


def test_stored_feature_reuse_ignores_only_columns_the_builder_never_reads(tables) -> None:
    """The reuse check skips NOT_FEATURE_INPUTS: changing them must not change any feature."""
    from b3quant_models.features import build_option_features
    from b3quant_models.features.day_context import NOT_FEATURE_INPUTS

    iv = tables["option_iv"]
    changed = iv.copy()
    for c in NOT_FEATURE_INPUTS:
        changed[c] = changed[c] * 7 + 3
    args = (tables["iv_surface"], tables["underlying_quotes"])
    pd.testing.assert_frame_equal(build_option_features(changed, *args), build_option_features(iv, *args),
                                  check_exact=True)


def test_store_cache_reloads_on_change_and_serves_last_version_while_locked(market_db: Path, tmp_path: Path,
                                                                            monkeypatch) -> None:
    from bento import store as store_mod

    db = tmp_path / "copy.duckdb"
    db.write_bytes(market_db.read_bytes())
    s = store_mod.MarketStore(db)
    calls = []

    def load(session) -> int:
        calls.append(1)
        return int(session.query("SELECT count(*) AS n FROM b3.option_iv")["n"].iloc[0])

    n = s.cached("k", load)
    assert s.cached("k", load) == n and len(calls) == 1  # same file version: no database access
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert s.cached("k", load) == n and len(calls) == 2  # new version: reloaded once

    writer = duckdb.connect(str(db))  # a writer holds the file: read-only opens fail
    try:
        writer.execute("DELETE FROM b3.option_iv WHERE ticker IN (SELECT ticker FROM b3.option_iv LIMIT 1)")
        writer.execute("CHECKPOINT")
        assert s.cached("k", load) == n and len(calls) == 2  # the last version keeps being served
    finally:
        writer.close()
    monkeypatch.setattr(store_mod, "RETRY_LOCKED_S", 0.0)
    assert s.cached("k", load) < n and len(calls) == 3  # writer gone: the new version is loaded
    db.unlink()
    with pytest.raises(store_mod.StoreUnavailable):
        s.cached("k", load)  # a missing file is unavailable, not stale


def test_predict_iv_concurrent_requests_all_succeed(market_db: Path) -> None:
    """Regression: concurrent feature reads once failed inside DuckDB (registered frames across threads);
    now concurrent requests share one cached day context, loaded once."""
    from concurrent.futures import ThreadPoolExecutor

    from b3quant_models.features.day_context import load_day_context
    from bento import forecast
    from bento.schemas import ForecastRow
    from bento.store import MarketStore

    store = MarketStore(market_db)
    snap = store.snapshot()
    day = snap.latest
    rows = [ForecastRow(underlying="PETR4", option_type="call", strike=40.0, expiry="2025-06-20", iv=0.3)]
    loads = []

    def load(db):
        loads.append(1)
        return load_day_context(db, day, (5, 10, 21))

    def one(_: int) -> float:
        ctx = store.cached(("day_context", day), load)
        _, feats = forecast.forecast_features(store, rows, day, snap.rates[day], (5, 10, 21), context=ctx)
        return float(feats["iv"].iloc[0])

    with ThreadPoolExecutor(8) as ex:
        assert list(ex.map(one, range(32))) == [0.3] * 32
    assert len(loads) == 1
    with store.session() as db:  # without a context one is built on the session
        _, feats = forecast.forecast_features(db, rows, day, snap.rates[day], (5, 10, 21))
    assert feats["iv"].tolist() == [0.3]


# ------------------------------------------------------------------------------------------ real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_bentoml_serve_process(market_db: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "B3Q_DUCKDB_PATH": str(market_db), "BENTOML_HOME": str(tmp_path / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "True"}
    cmd = [sys.executable, "-m", "bentoml", "serve", "bento.service:B3QuantService",
           "--host", "127.0.0.1", "--port", str(port)]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        if not ready:
            tail = (tmp_path / "serve.log").read_bytes()[-2000:].decode(errors="replace")
            pytest.skip(f"bentoml serve did not become ready within 60 s (exit {proc.poll()}): {tail}")
        resp = httpx.post(f"{base}/implied_vol", json={"rows": [_row(price=2.0)]}, timeout=10)
        assert resp.status_code == 200 and resp.json()[0]["reason"] == "ok"
        assert httpx.post(f"{base}/implied_vol", json={"rows": [_row(price=-1.0)]}, timeout=10).status_code == 400
        assert "bentoml_service_request" in httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# ------------------------------------------------------------------------------------------ hostile input (issue 13)
def _strict_json(resp: httpx.Response):
    """The body parsed by a strict JSON parser: Infinity/NaN are not JSON."""
    def bad(token: str):
        raise ValueError(f"non-JSON token {token}")
    return json.loads(resp.text, parse_constant=bad)


@pytest.mark.parametrize("path", ["/implied_vol", "/surface", "/predict_iv"])
@pytest.mark.parametrize(
    ("ctype", "body"),
    [("multipart/form-data", b'{"underlying":"0"}'), ("multipart/form-data; boundary=x", b"--x\r\nnot multipart"),
     ("application/x-www-form-urlencoded", b"a=1"), ("text/plain", b"{}"), ("application/vnd.bentoml+pickle", b"x")],
)
def test_non_json_media_types_are_415_not_500(client: TestClient, path: str, ctype: str, body: bytes) -> None:
    resp = client.post(path, content=body, headers={"content-type": ctype})
    assert resp.status_code == 415, resp.text
    assert "application/json" in _strict_json(resp)["error"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe\x00", b"[]", b"null", b'"x"', b'{"rows": null}', b'{"rows": [null]}',
     b'{"rows": [[1, 2]]}', b'{"rows": {"a": 1}}', b'{"contracts": 1}', b'{"underlying": 5}', b""],
)
@pytest.mark.parametrize("path", ["/implied_vol", "/surface", "/predict_iv"])
def test_malformed_bodies_are_4xx_json(client: TestClient, path: str, body: bytes) -> None:
    resp = client.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    out = _strict_json(resp)
    assert set(out) == {"error", "detail"} and isinstance(out["error"], str)


@pytest.mark.parametrize(
    "row",
    [_row(expiry=None, t=1e300, rate=0.1, trade_date="2025-03-10"),
     _row(spot=1e308, strike=1e-308, rate=0.1, trade_date="2025-03-10"),
     _row(price=1e300, rate=0.1, trade_date="2025-03-10")],
)
def test_extremes_beyond_the_bounds_are_400(client: TestClient, row: dict) -> None:
    resp = client.post("/implied_vol", json={"rows": [row]})
    assert resp.status_code == 400, resp.text
    assert "less than or equal to" in _strict_json(resp)["error"]


def test_extreme_valid_inputs_answer_valid_json(client: TestClient) -> None:
    rows = [_row(expiry=None, t=t, spot=s, strike=k, price=p, rate=r, trade_date="2025-03-10")
            for t in (1e-12, 100.0) for s in (1e-300, 1e9) for k in (1e-300, 1e9) for p in (1e-300, 1e9)
            for r in (-0.999, 4.999)]
    resp = client.post("/implied_vol", json={"rows": rows})
    assert resp.status_code == 200, resp.text
    out = _strict_json(resp)
    assert len(out) == len(rows) and all(isinstance(x["reason"], str) for x in out)


def test_non_finite_results_become_null_with_a_reason(monkeypatch) -> None:
    """Should an overflow get past the bounds, the value is null (reason 'non_finite' if the solve was ok)."""
    from bento import service
    from bento.schemas import IVRow

    def row(**kw):
        return IVRow.model_construct(**{"price": 2.0, "spot": 30.0, "strike": 31.0, "option_type": "call",
                                        "expiry": None, "t": 0.25, "trade_date": None, "rate": 0.1, **kw})

    func = service.B3QuantService.apis["implied_vol"].func
    out = func(None, [row(spot=1e308, strike=1e-308, t=1e300, price=1.0), row()])
    assert out[0].forward is None and out[0].iv is None and out[0].reason != "ok"
    assert out[1].reason == "ok" and out[1].forward is not None
    real = service.greeks
    monkeypatch.setattr(service, "greeks", lambda *a: {**real(*a), "gamma": np.array([np.inf, 1.0])})
    out = func(None, [row(), row()])
    assert out[0].reason == "non_finite" and out[0].iv is None and out[0].gamma is None
    assert out[1].reason == "ok" and out[1].gamma == 1.0
    assert all("Infinity" not in o.model_dump_json() for o in out)


def test_strict_types_and_unknown_top_level_fields(client: TestClient) -> None:
    for bad in ({"price": True}, {"price": "2.0"}, {"strike": [31]}, {"option_type": 1}):
        resp = client.post("/implied_vol", json={"rows": [_row(**bad)]})
        assert resp.status_code == 400, (bad, resp.text)
    good = {"underlying": "PETR4", "option_type": "call", "strike": 40.0, "expiry": "2025-06-20", "iv": 0.3}
    for path, body in (("/implied_vol", {"rows": [_row(price=2.0)]}), ("/surface", {"underlying": "PETR4"}),
                       ("/predict_iv", {"contracts": [good]})):
        assert client.post(path, json=body).status_code == 200
        resp = client.post(path, json={**body, "unknown": 1})
        assert resp.status_code == 400 and _locs(resp) == [["unknown"]], resp.text
    resp = client.post("/predict_iv", json={"contracts": [{**good, "trades": True}]})
    assert resp.status_code == 400 and _locs(resp) == [["contracts", 0, "trades"]]


def test_body_size_limit_is_checked_before_reading(client: TestClient) -> None:
    """A Content-Length over the limit is a 413 without a byte read; a chunked body stops at the limit."""
    import asyncio

    from bento.http import Guard

    reads: list[int] = []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    sent: list[dict] = []

    async def send(msg):
        sent.append(msg)

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("the app was called")

    scope = {"type": "http", "method": "POST", "path": "/predict_iv",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"99999999")]}
    asyncio.run(Guard(app, max_body=1000)(scope, receive, send))
    assert sent[0]["status"] == 413 and reads == []

    from bento.http import MAX_BODY_BYTES

    big = b'{"rows": [' + b" " * MAX_BODY_BYTES + b"]}"
    resp = client.post("/implied_vol", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "B3Q_BENTO_MAX_BODY_BYTES" in resp.json()["error"]

    def chunks():
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    resp = client.post("/implied_vol", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_long_strings_are_rejected_and_never_echoed_whole(client: TestClient) -> None:
    good = {"underlying": "PETR4", "option_type": "call", "strike": 40.0, "expiry": "2025-06-20", "iv": 0.3}
    long = "A" * 100_000
    for path, body in (("/surface", {"underlying": long}), ("/predict_iv", {"contracts": [{**good, "ticker": long}]}),
                       ("/predict_iv", {"contracts": [{**good, "underlying": long}]}),
                       ("/implied_vol", {"rows": [_row(option_type=long)]}),
                       ("/implied_vol", {"rows": [_row(**{long: 1})]})):
        resp = client.post(path, json=body)
        assert resp.status_code == 400, resp.text[:300]
        assert len(resp.content) < 3000 and long[:1000] not in resp.text


def test_error_bodies_truncate_quoted_input() -> None:
    from bento.http import MAX_ECHO, error_body

    out = error_body(404, json.dumps([{"error": "x" * 50_000}]).encode())
    assert len(out["error"]) < MAX_ECHO + 40 and out["detail"] is None


def test_predict_iv_ticker_must_name_the_contract(client: TestClient, tables, last_day) -> None:
    rows, req = _contracts(tables, last_day)
    c = req[0]
    tk = rows["ticker"].iloc[0]
    assert client.post("/predict_iv", json={"contracts": [{**c, "ticker": tk.lower()}]}).status_code == 200
    other = next(r for r in rows.itertuples() if r.option_type != c["option_type"])
    for wrong in ({"ticker": other.ticker}, {"ticker": tk, "option_type": other.option_type},
                  {"ticker": tk, "strike": c["strike"] + 1.0}):
        resp = client.post("/predict_iv", json={"contracts": [{**c, **wrong}]})
        assert resp.status_code == 422, resp.text
        assert "contracts[0].ticker" in resp.json()["error"] and "stored series" in resp.json()["error"]
    # A ticker the store has never seen is a new contract (no history), as before.
    new = client.post("/predict_iv", json={"contracts": [{**c, "ticker": "NEWX1"}]})
    assert new.status_code == 200 and new.json()["predictions"][0]["ticker"] == "NEWX1"


def test_4xx_log_one_warning_line_and_5xx_a_traceback(client: TestClient, caplog, monkeypatch) -> None:
    import logging

    from bento import service

    with caplog.at_level(logging.INFO):
        caplog.clear()
        assert client.post("/implied_vol", json={"rows": [_row(price=-1.0)]}).status_code == 400
        assert client.post("/surface", json={"underlying": "XXXX4"}).status_code == 404
        errs = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(errs) == 2 and all(r.levelno == logging.WARNING and r.exc_info is None for r in errs)
        assert all(len(r.getMessage().splitlines()) == 1 for r in errs)

        def boom(day):
            raise RuntimeError("boom")

        monkeypatch.setattr(service.forecast, "target_date", boom)
        caplog.clear()
        good = {"underlying": "PETR4", "option_type": "call", "strike": 40.0, "expiry": "2025-06-20", "iv": 0.3}
        resp = client.post("/predict_iv", json={"contracts": [good]})
        assert resp.status_code == 500 and set(resp.json()) == {"error", "detail"}
        errs = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errs) == 1 and errs[0].exc_info is not None


def test_bearer_token_when_configured(market_db: Path, empty_model_store: Path, monkeypatch) -> None:
    monkeypatch.setenv("B3Q_DUCKDB_PATH", str(market_db))
    monkeypatch.setenv("B3Q_BENTO_TOKEN", "s3cret")
    with TestClient(_app()) as c:
        assert c.get("/readyz").status_code == 200  # probes stay open
        body = {"rows": [_row(price=2.0)]}
        for auth in (None, "Bearer wrong", "s3cret"):
            r = c.post("/implied_vol", json=body, headers={"authorization": auth} if auth else {})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/implied_vol", json=body, headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_serve_commands_bind_loopback() -> None:
    """Every serve command the project prints or documents names --host 127.0.0.1, and the service's own
    default host is loopback."""
    from bento.service import B3QuantService

    assert B3QuantService.config["http"]["host"] == "127.0.0.1"
    texts = {p: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                                        ROOT / "b3quant_assets" / "cli.py"]}
    found = 0
    for p, text in texts.items():
        for line in text.splitlines():
            if "bentoml serve" in line and "--port" in line:
                found += 1
                assert "--host 127.0.0.1" in line, f"{p.name}: {line.strip()}"
    assert found >= 3


# ------------------------------------------------------------------------------------------ OpenAPI (issue 13)
def test_openapi_document_is_the_projects(client: TestClient) -> None:
    spec = client.get("/docs.json").json()
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"].startswith("b3quant") and spec["info"]["version"] not in ("None", "")
    assert "BentoML" not in spec["info"]["description"]
    for path in ("/implied_vol", "/surface", "/predict_iv"):
        op = spec["paths"][path]["post"]
        assert {"400", "404", "413", "415", "500", "503"} <= set(op["responses"])
        assert all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
                   for c, r in op["responses"].items() if int(c) >= 400)
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        assert spec["components"]["schemas"][ref]["additionalProperties"] is False


def test_openapi_examples_work_against_the_data(client: TestClient) -> None:
    spec = client.get("/docs.json").json()
    for path in ("/implied_vol", "/surface", "/predict_iv"):
        example = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
        assert "string" not in json.dumps(example)
        resp = client.post(path, json=example)
        assert resp.status_code == 200, (path, resp.text)
        got = resp.json()
        reasons = [r["reason"] for r in (got if path == "/implied_vol" else got.get("predictions", []))]
        assert all(r == "ok" for r in reasons), (path, got)  # a working example, not a solver failure


def test_oversize_batches_are_rejected_before_their_rows_are_validated(client: TestClient) -> None:
    """Issue 13: max_length is checked after every row was validated (100k rows took seconds to reject)."""
    from bento.schemas import MAX_ROWS

    for path, key in (("/implied_vol", "rows"), ("/predict_iv", "contracts")):
        r = client.post(path, json={key: [{}] * (MAX_ROWS + 1)})  # every row invalid: none was looked at
        assert r.status_code == 400 and [d["type"] for d in r.json()["detail"]] == ["too_long"], r.text[:300]
        assert r.json()["detail"][0]["loc"] == [key]


def _doc_examples(text: str) -> list[tuple[str, dict, dict]]:
    """(path, request body, documented response) of each curl example in docs/serving.md."""
    import re

    out = []
    pat = re.compile(r"```bash\ncurl -s localhost:3000(/\w+) .*?-d '(.*?)'\n```\n```json\n(.*?)\n```", re.S)
    for path, body, answer in pat.findall(text):
        out.append((path, json.loads(body), json.loads(answer)))
    return out


def test_serving_doc_examples_run_against_the_data(client: TestClient) -> None:
    """docs/serving.md's curl examples answer 200 on the test market with the documented fields."""
    examples = _doc_examples((ROOT / "docs" / "serving.md").read_text())
    assert {p for p, _, _ in examples} == {"/implied_vol", "/surface", "/predict_iv"}
    for path, body, documented in examples:
        resp = client.post(path, json=body)
        assert resp.status_code == 200, (path, resp.text)
        got = resp.json()
        if isinstance(documented, list):
            assert set(got[0]) == set(documented[0])
            assert got[0]["reason"] == documented[0]["reason"] == "ok"
        else:
            assert set(got) == set(documented)
            for g, d in zip(got.get("predictions", []), documented.get("predictions", []), strict=True):
                assert g["reason"] == d["reason"] == "ok"


def test_serving_doc_examples_are_the_openapi_examples(client: TestClient) -> None:
    """The docs show the document's request examples, and the documented implied_vol answer (from the demo)
    is what the solver gives for that row on the documented trade date and rate."""
    from bento.schemas import IMPLIED_VOL_EXAMPLE, PREDICT_IV_EXAMPLE, SURFACE_EXAMPLE

    examples = {p: (b, d) for p, b, d in _doc_examples((ROOT / "docs" / "serving.md").read_text())}
    assert examples["/implied_vol"][0] == IMPLIED_VOL_EXAMPLE
    assert examples["/surface"][0] == SURFACE_EXAMPLE
    assert examples["/predict_iv"][0] == PREDICT_IV_EXAMPLE
    doc = examples["/implied_vol"][1][0]
    row = {**IMPLIED_VOL_EXAMPLE["rows"][0], "trade_date": doc["trade_date"], "rate": doc["rate"]}
    got = client.post("/implied_vol", json={"rows": [row]}).json()[0]
    assert set(got) == set(doc)
    for key, value in doc.items():
        assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key
    pred = examples["/predict_iv"][1]["predictions"][0]
    assert pred["iv_today"] == pytest.approx(doc["iv"], rel=1e-12)  # same quote, spot and (demo) rate


def test_schemathesis_all_checks(market_db: Path, empty_model_store: Path, tmp_path: Path, monkeypatch) -> None:
    """schemathesis (--checks all, bounded examples) against the app on a loopback port: 0 failures."""
    import threading

    import uvicorn

    monkeypatch.setenv("B3Q_DUCKDB_PATH", str(market_db))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started
        st = Path(sys.executable).with_name("schemathesis")
        cmd = [str(st), "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run",
               f"http://127.0.0.1:{port}/docs.json", "--checks", "all", "--max-examples", "15",
               "--exclude-path", "/metrics", "--seed", "1", "--no-color", "--request-timeout", "600",
               "--report-dir", str(tmp_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)  # 10,000-row cases: minutes under load
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    finally:
        server.should_exit = True
        th.join(timeout=10)


def test_predict_iv_concurrent_requests_are_merged_exactly(market_db: Path, empty_model_store: Path, tables,
                                                          last_day, monkeypatch) -> None:
    """Concurrent requests share feature computations (bento.coalesce) and get exactly what each gets alone;
    requests naming one series are never merged."""
    from concurrent.futures import ThreadPoolExecutor

    from bento import forecast

    monkeypatch.setenv("B3Q_DUCKDB_PATH", str(market_db))
    _, stored = _contracts(tables, last_day, 24)
    bodies = [{"contracts": [c]} for c in stored] + [{"contracts": [{**c, "price": 1.5}]} for c in stored[:8]]
    bodies += [{"contracts": [{**stored[0], "ticker": "SAMEX1"}]}, {"contracts": [{**stored[1], "ticker": "SAMEX1"}]}]
    with TestClient(_app()) as c:
        alone = [c.post("/predict_iv", json=b).json() for b in bodies]
        calls: list[int] = []
        real = forecast.forecast_features

        def counted(store, rows, *a, **kw):
            calls.append(len(rows))
            time.sleep(0.05)  # make requests overlap
            return real(store, rows, *a, **kw)

        monkeypatch.setattr(forecast, "forecast_features", counted)
        with ThreadPoolExecutor(16) as ex:
            merged = list(ex.map(lambda b: c.post("/predict_iv", json=b), bodies))
    assert all(r.status_code == 200 for r in merged)
    assert [r.json() for r in merged] == alone
    assert len(calls) < len(bodies) and max(calls) > 1  # merged for real
