"""Settings: environment variables, configure(), settings_override() and URL resolution."""

from __future__ import annotations

import asyncio
import os

import pydantic
import pytest

from tessellum import config
from tessellum.config import (
    DEFAULT_PC_TOKEN_ENDPOINT,
    Settings,
    configure,
    get_settings,
    load_settings,
    reset_settings,
    settings_override,
)
from tessellum.errors import ConfigurationError

PC = "https://planetarycomputer.microsoft.com/api/stac/v1"


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    """No TESSELLUM_* variables from the outer environment; fresh process settings."""
    for key in list(os.environ):
        if key.upper().startswith("TESSELLUM_"):
            monkeypatch.delenv(key)
    reset_settings()
    yield
    reset_settings()


def test_defaults() -> None:
    s = load_settings()
    assert s.max_concurrency == 64
    assert s.header_prefix_bytes == 65536
    assert s.provider_timeout_s == 120
    assert s.max_output_pixels == 100_000_000
    assert s.pc_token_endpoint == DEFAULT_PC_TOKEN_ENDPOINT
    assert s.sign_hosts == ("*.blob.core.windows.net",)
    assert s.progress is None
    assert s.stac_api_for("copernicus_dem", PC) == PC


def test_env_variables_are_read_at_load_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().max_concurrency == 64
    monkeypatch.setenv("TESSELLUM_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("TESSELLUM_PROGRESS", "false")
    assert get_settings().max_concurrency == 64  # the process value is kept...
    reset_settings()
    assert get_settings().max_concurrency == 8  # ...until it is re-read
    assert get_settings().progress is False


def test_invalid_env_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSELLUM_MAX_CONCURRENCY", "0")
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        load_settings()


def test_list_settings_accept_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSELLUM_SIGN_HOSTS", "127.0.0.1, *.blob.core.windows.net")
    monkeypatch.setenv("TESSELLUM_CATALOG_FILES", '["/a.toml", "/b.toml"]')
    s = load_settings()
    assert s.sign_hosts == ("127.0.0.1", "*.blob.core.windows.net")
    assert [str(p) for p in s.catalog_files] == ["/a.toml", "/b.toml"]


def test_per_provider_stac_env_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSELLUM_STAC_API_COPERNICUS_DEM", "http://127.0.0.1:9001")
    monkeypatch.setenv("TESSELLUM_WCS_URL_TANDEM_X", "http://127.0.0.1:9002/wcs")
    monkeypatch.setenv(
        "TESSELLUM_STAC_API_OVERRIDES", '{"https://example.com/stac/": "http://127.0.0.1:9003"}'
    )
    s = load_settings()
    assert s.stac_api_overrides == {
        "copernicus_dem": "http://127.0.0.1:9001",
        "https://example.com/stac": "http://127.0.0.1:9003",
    }
    assert s.stac_api_for("copernicus_dem", PC) == "http://127.0.0.1:9001"
    assert s.stac_api_for("nasadem", PC) == PC  # other providers untouched
    assert s.stac_api_for("x", "https://example.com/stac") == "http://127.0.0.1:9003"
    assert s.wcs_url_for("tandem_x", "https://geoservice.dlr.de/eoc/elevation/wcs") == (
        "http://127.0.0.1:9002/wcs"
    )


def test_override_precedence_provider_then_url_then_global() -> None:
    s = load_settings(
        stac_api="http://global",
        stac_api_overrides={"nasadem": "http://by-provider", PC: "http://by-url"},
    )
    assert s.stac_api_for("nasadem", PC) == "http://by-provider"
    assert s.stac_api_for("alos_dem", PC) == "http://by-url"
    assert s.stac_api_for("alos_dem", "https://other/stac") == "http://global"
    assert s.stac_api_for("tandem_x", None) is None  # a WCS dataset gains no STAC API


def test_configure_derives_and_makes_current() -> None:
    before = get_settings()
    new = configure(max_concurrency=7, stac_api="http://127.0.0.1:1")
    assert get_settings() is new
    assert new.max_concurrency == 7 and new.stac_api == "http://127.0.0.1:1"
    assert before.max_concurrency == 64  # old values are immutable
    again = configure(retries=0)
    assert again.max_concurrency == 7 and again.retries == 0  # builds on the current value
    with pytest.raises(pydantic.ValidationError):
        new.max_concurrency = 1  # type: ignore[misc]


def test_configure_rejects_unknown_and_invalid_values() -> None:
    with pytest.raises(ConfigurationError, match="max_concurency"):
        configure(max_concurency=3)
    with pytest.raises(ConfigurationError, match="header_prefix_bytes"):
        configure(header_prefix_bytes=-1)
    assert get_settings().header_prefix_bytes == 65536  # a failed configure changes nothing


def test_configure_does_not_reread_env(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings()
    monkeypatch.setenv("TESSELLUM_RETRIES", "9")
    assert configure(max_concurrency=5).retries == 3


def test_settings_override_is_scoped_and_restored() -> None:
    outer = get_settings()
    with settings_override(max_output_pixels=10) as s:
        assert get_settings() is s and s.max_output_pixels == 10
        with settings_override(retries=1) as inner:
            assert inner.max_output_pixels == 10 and inner.retries == 1
        assert get_settings() is s
    assert get_settings() is outer
    with pytest.raises(RuntimeError), settings_override(retries=2):
        raise RuntimeError("boom")
    assert get_settings().retries == 3


async def test_settings_override_isolates_concurrent_tasks() -> None:
    seen: dict[str, int] = {}

    async def worker(name: str, value: int) -> None:
        with settings_override(max_concurrency=value):
            await asyncio.sleep(0.01)  # interleave with the other task
            seen[name] = get_settings().max_concurrency

    await asyncio.gather(worker("a", 3), worker("b", 5))
    assert seen == {"a": 3, "b": 5}
    assert get_settings().max_concurrency == 64


def test_show_progress() -> None:
    assert load_settings(progress=True).show_progress() is True
    assert load_settings(progress=True).show_progress(False) is False
    assert load_settings(progress=False).show_progress() is False


def test_config_module_does_not_load_settings_at_import() -> None:
    reset_settings()
    assert config._process_settings is None
    assert isinstance(get_settings(), Settings)
