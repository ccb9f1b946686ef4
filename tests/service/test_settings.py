from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_defaults(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("LATENTSERVE_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.models_dir == Path("models") and s.host == "127.0.0.1" and s.port == 8000 and s.workers == 1
    assert s.api_key is None and s.allow_pickle is False and s.trusted_models == []
    assert s.max_body_bytes == 64 << 20 and s.threads == 1


def test_environment(monkeypatch):
    monkeypatch.setenv("LATENTSERVE_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("LATENTSERVE_API_KEY", "topsecret")
    monkeypatch.setenv("LATENTSERVE_TRUSTED_MODELS", "a, b")
    monkeypatch.setenv("LATENTSERVE_RELOAD_INTERVAL_S", "0")
    s = Settings()
    assert s.models_dir == Path("/srv/models") and s.trusted_models == ["a", "b"]
    assert (
        s.api_key is not None and s.api_key.get_secret_value() == "topsecret" and "topsecret" not in repr(s)
    )
    assert s.reload_interval_s == 0
    monkeypatch.setenv("LATENTSERVE_TRUSTED_MODELS", '["c"]')
    assert Settings().trusted_models == ["c"]


def test_round_trip_through_the_environment(monkeypatch):
    s = Settings(models_dir=Path("/x"), api_key="k", trusted_models=["m"], workers=3)
    for key, value in s.as_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == s


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("LATENTSERVE_PORT", "99999")
    with pytest.raises(ValidationError):
        Settings()


def test_an_empty_api_key_means_no_key(monkeypatch):
    # compose passes LATENTSERVE_API_KEY= when the operator set none: that must not lock every route
    monkeypatch.setenv("LATENTSERVE_API_KEY", "")
    assert Settings().api_key is None
    monkeypatch.setenv("LATENTSERVE_API_KEY", "   ")
    assert Settings().api_key is None


def test_the_overload_knobs_have_defaults_and_bounds(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("LATENTSERVE_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert (s.drains_at_once, s.fd_reserve) == (2, 128)
    assert (s.json_offload_bytes, s.json_workers, s.json_queue) == (3 << 20, 1, 8)
    monkeypatch.setenv("LATENTSERVE_DRAINS_AT_ONCE", "5")
    monkeypatch.setenv("LATENTSERVE_JSON_WORKERS", "0")
    assert (Settings().drains_at_once, Settings().json_workers) == (5, 0)
    for name, bad in (
        ("drains_at_once", "0"),
        ("fd_reserve", "-1"),
        ("json_offload_bytes", "-1"),
        ("json_workers", "65"),
        ("json_queue", "-1"),
    ):
        monkeypatch.setenv(f"LATENTSERVE_{name.upper()}", bad)
        with pytest.raises(ValidationError, match=name):
            Settings()
        monkeypatch.delenv(f"LATENTSERVE_{name.upper()}")
