"""The dataset catalog: shipped entries, validation, immutability, resolution, signing, CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tessellum.catalog import (
    Catalog,
    DatasetEntry,
    NoSigner,
    PlanetaryComputerSigner,
    ProviderInfo,
    builtin_catalog,
    default_catalog,
    get_dataset,
    list_datasets,
    list_providers,
    register_dataset,
    reset_default_catalog,
    signer_for,
)
from tessellum.cli.datasets import datasets, format_resolution
from tessellum.config import configure, reset_settings, settings_override
from tessellum.errors import ConfigurationError, DatasetNotFoundError, ProtocolError

PC_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"
SHIPPED = {
    "copernicus_dem:elevation": ("cop-dem-glo-30", "data", "EPSG:4326"),
    "cop_dem_90:elevation": ("cop-dem-glo-90", "data", "EPSG:4326"),
    "usgs_3dep:elevation": ("3dep-seamless", "data", "EPSG:4269"),
    "nasadem:elevation": ("nasadem", "elevation", "EPSG:4326"),
    "alos_dem:elevation": ("alos-dem", "data", "EPSG:4326"),
    "esa_worldcover:land_cover": ("esa-worldcover", "map", "EPSG:4326"),
}
WORLDCOVER_CLASSES = {
    10: "Tree cover",
    20: "Shrubland",
    30: "Grassland",
    40: "Cropland",
    50: "Built-up",
    60: "Bare / sparse vegetation",
    70: "Snow and ice",
    80: "Permanent water bodies",
    90: "Herbaceous wetland",
    95: "Mangroves",
    100: "Moss and lichen",
}


@pytest.fixture(autouse=True)
def clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh settings and default catalog, without TESSELLUM_* variables of the outer env."""
    for key in list(os.environ):
        if key.upper().startswith("TESSELLUM_"):
            monkeypatch.delenv(key)
    reset_settings()
    reset_default_catalog()
    yield
    reset_settings()
    reset_default_catalog()


def custom_entry(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": "my_org:ndvi",
        "provider_name": "My Org",
        "title": "NDVI mosaic",
        "protocol": "stac_cog",
        "stac_api": "https://stac.example.org/v1",
        "collections": ["ndvi-2024"],
        "asset": "ndvi",
        "native_crs": "EPSG:3857",
        "native_resolution": 10.0,
        "dtype": "int16",
        "nodata": -32768,
        "units": "1",
        "scale": 0.0001,
        "license": "CC-BY-4.0",
        "supports_raster": True,
        "version": "1",
    }
    fields.update(changes)
    return fields


# --- the shipped catalog ----------------------------------------------------------------
def test_shipped_catalog_loads_with_every_provider() -> None:
    cat = default_catalog()
    assert set(cat.ids) == {*SHIPPED, "tandem_x:elevation"}
    assert default_catalog() is cat  # cached


@pytest.mark.parametrize("dataset_id", sorted(SHIPPED))
def test_shipped_stac_entries(dataset_id: str) -> None:
    entry = builtin_catalog().get(dataset_id)
    collection, asset, crs = SHIPPED[dataset_id]
    assert entry.protocol == "stac_cog"
    assert entry.stac_api == PC_STAC
    assert entry.collections == (collection,)
    assert entry.asset == asset
    assert entry.native_crs == crs
    assert entry.signing == "planetary_computer"
    assert entry.supports_raster
    assert entry.license and entry.license_url and entry.citation and entry.version
    assert entry.units in ("m", "class")
    assert entry.native_resolution < 0.001  # degrees, not metres


def test_shipped_facts() -> None:
    cat = builtin_catalog()
    cop = cat.get("copernicus_dem:elevation")
    assert cop.dtype == "float32" and cop.native_resolution == pytest.approx(1 / 3600)
    assert cat.get("cop_dem_90:elevation").native_resolution == pytest.approx(3 / 3600)
    assert cat.get("usgs_3dep:elevation").native_resolution == pytest.approx(1 / 10800)
    assert cat.get("nasadem:elevation").dtype == "int16"
    wc = cat.get("esa_worldcover:land_cover")
    assert (wc.dtype, wc.nodata, wc.kind, wc.license) == ("uint8", 0, "categorical", "CC-BY-4.0")
    assert wc.classes == WORLDCOVER_CLASSES
    assert wc.temporal and wc.default_time_range == (dt.date(2021, 1, 1), dt.date(2021, 12, 31))
    tdx = cat.get("tandem_x:elevation")
    assert tdx.protocol == "wcs" and tdx.wcs_url and tdx.coverage_id
    assert tdx.credentials_env and tdx.supports_raster and tdx.stac_api is None


def test_every_entry_round_trips_through_validation() -> None:
    for entry in builtin_catalog():
        assert DatasetEntry.model_validate(entry.model_dump()) == entry
        assert entry.cache_key == f"{entry.id}@{entry.version}"


# --- lookups ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("copernicus_dem:elevaton", "copernicus_dem:elevation"),
        ("copernicus_dme:elevation", "copernicus_dem:elevation"),
        ("esa_worldcover:landcover", "esa_worldcover:land_cover"),
        ("nasadem", "nasadem:elevation"),
        ("usgs3dep:elevation", "usgs_3dep:elevation"),
    ],
)
def test_get_with_typo_suggests_the_right_id(typo: str, expected: str) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        builtin_catalog().get(typo)
    message = str(info.value)
    assert typo in message
    assert f"did you mean {expected!r}" in message  # the best match comes first
    assert isinstance(info.value, KeyError)


def test_unknown_id_without_close_match() -> None:
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'zzz'") as info:
        get_dataset("zzz")
    assert "did you mean" not in str(info.value)


def test_list_filters() -> None:
    cat = builtin_catalog()
    assert [e.id for e in cat.list(kind="categorical")] == ["esa_worldcover:land_cover"]
    assert [e.id for e in cat.list(protocol="wcs")] == ["tandem_x:elevation"]
    assert [e.id for e in cat.list(provider="nasadem")] == ["nasadem:elevation"]
    assert len(cat.list(variable="elevation")) == 6
    assert len(cat.list(supports_raster=True)) == 7
    assert cat.list(supports_raster=False) == []
    # NASADEM stops at 60 N; ALOS at 82 N
    arctic = {e.id for e in cat.list(bbox=(20.0, 70.0, 21.0, 71.0))}
    assert "nasadem:elevation" not in arctic and "alos_dem:elevation" in arctic
    # an antimeridian-crossing bbox still meets global datasets
    assert "copernicus_dem:elevation" in {e.id for e in cat.list(bbox=(179.0, 0, -179.0, 1))}
    with pytest.raises(ValueError, match="kind"):
        cat.list(kind="discrete")


def test_providers() -> None:
    providers = {p.slug: p for p in list_providers()}
    assert set(providers) == {i.split(":")[0] for i in (*SHIPPED, "tandem_x:elevation")}
    wc = providers["esa_worldcover"]
    assert isinstance(wc, ProviderInfo)
    assert wc.datasets == ("esa_worldcover:land_cover",)
    assert wc.license == "CC-BY-4.0" and wc.protocol == "stac_cog" and wc.supports_raster
    assert providers["tandem_x"].protocol == "wcs"


# --- immutability -----------------------------------------------------------------------
def test_register_returns_a_new_catalog() -> None:
    base = default_catalog()
    mine = base.register(custom_entry())
    assert "my_org:ndvi" in mine and "my_org:ndvi" not in base
    assert len(mine) == len(base) + 1
    assert "my_org:ndvi" not in default_catalog()  # the process default is untouched
    # a STAC/COG dataset is raster-capable by declaring collections + asset
    assert "my_org:ndvi" in {e.id for e in mine.list(supports_raster=True)}
    with pytest.raises(ConfigurationError, match="already in the catalog"):
        mine.register(custom_entry())
    replaced = mine.register(custom_entry(version="2"), replace=True)
    assert replaced.get("my_org:ndvi").version == "2" and mine.get("my_org:ndvi").version == "1"


def test_entries_are_frozen() -> None:
    entry = builtin_catalog().get("nasadem:elevation")
    with pytest.raises(ValueError, match="frozen"):
        entry.nodata = 0  # type: ignore[misc]


def test_register_dataset_replaces_the_default_explicitly() -> None:
    before = default_catalog()
    new = register_dataset(custom_entry())
    assert default_catalog() is new
    assert get_dataset("my_org:ndvi").asset == "ndvi"
    assert "my_org:ndvi" not in before  # the old value did not change
    reset_default_catalog()
    assert "my_org:ndvi" not in default_catalog()


def test_merge_other_wins(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
[datasets."nasadem:elevation"]
provider_name = "NASADEM mirror"
title = "NASADEM on my STAC"
protocol = "stac_cog"
stac_api = "https://stac.example.org"
collections = ["nasadem"]
asset = "elevation"
native_crs = "EPSG:4326"
native_resolution = 0.0002777777777777778
dtype = "int16"
nodata = -32768
license = "Public domain"
version = "mirror-1"
""",
        encoding="utf-8",
    )
    merged = builtin_catalog().merge(Catalog.from_toml(path))
    assert merged.get("nasadem:elevation").version == "mirror-1"
    assert builtin_catalog().get("nasadem:elevation").version == "v001"
    assert len(merged) == len(builtin_catalog())


def test_user_catalog_files_and_overrides_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "extra.toml"
    fields = {k: v for k, v in custom_entry().items() if k != "id"}
    lines = ['[datasets."my_org:ndvi"]'] + [f"{k} = {toml_value(v)}" for k, v in fields.items()]
    path.write_text("\n".join(lines), encoding="utf-8")
    with settings_override(
        catalog_files=(path,),
        dataset_overrides={"copernicus_dem:elevation": {"version": "2099"}},
    ):
        cat = default_catalog()
        assert cat.get("my_org:ndvi").scale == 0.0001
        assert cat.get("copernicus_dem:elevation").version == "2099"
    assert "my_org:ndvi" not in default_catalog()  # rebuilt when the settings change back


# --- validation ------------------------------------------------------------------------
GOOD_FIELDS: dict[str, object] = {
    "provider_name": "ACME",
    "title": "ACME DEM",
    "protocol": "stac_cog",
    "stac_api": "https://stac.acme.test",
    "collections": ["dem"],
    "asset": "data",
    "native_crs": "EPSG:4326",
    "native_resolution": 0.001,
    "dtype": "uint8",
    "license": "proprietary",
    "version": "1",
}


def toml_value(value: object) -> str:
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # JSON strings, numbers, booleans and arrays are valid TOML


def write_catalog(tmp_path: Path, fields: dict[str, object], head: str = "") -> Path:
    """A catalog file with one dataset ``acme:dem``; ``None`` values are left out."""
    lines = [head, '[datasets."acme:dem"]']
    lines += [f"{key} = {toml_value(value)}" for key, value in fields.items() if value is not None]
    path = tmp_path / "catalog.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_good_table_loads(tmp_path: Path) -> None:
    cat = Catalog.from_toml(write_catalog(tmp_path, GOOD_FIELDS))
    assert cat.ids == ("acme:dem",)
    assert cat.get("acme:dem").provider == "acme"


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("nodata", 300, "nodata"),  # does not fit uint8
        ("colections", ["x"], "colections"),  # a typo is not silently ignored
        ("native_resolution", -1, "native_resolution"),
        ("kind", "categorical", "classes"),  # categorical needs classes
        ("protocol", "ftp", "protocol"),
        ("stac_api", "not a url", "stac_api"),
        ("stac_api", None, "stac_api"),  # required by protocol stac_cog
        ("asset", None, "asset"),
        ("valid_range", [5, 1], "valid_range"),
        ("dtype", "uint7", "dtype"),
        ("version", None, "version"),
        ("classes", {"10": "x"}, "classes"),  # classes on continuous data
    ],
)
def test_bad_entry_names_the_entry_and_field(
    tmp_path: Path, key: str, value: object, field: str
) -> None:
    path = write_catalog(tmp_path, {**GOOD_FIELDS, key: value})
    with pytest.raises(ConfigurationError) as info:
        Catalog.from_toml(path)
    message = str(info.value)
    assert str(path) in message and "'acme:dem'" in message
    assert f"'{field}'" in message


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[datasets\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="invalid TOML"):
        Catalog.from_toml(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Catalog.from_toml(tmp_path / "absent.toml")
    with pytest.raises(ConfigurationError, match="schema_version"):
        Catalog.from_toml(write_catalog(tmp_path, GOOD_FIELDS, head="schema_version = 7"))


def test_register_bad_mapping_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"'my_org:ndvi'.*'asset'"):
        builtin_catalog().register(custom_entry(asset=None))


# --- resolution through settings -----------------------------------------------------
def test_env_override_changes_resolved_stac_url(monkeypatch: pytest.MonkeyPatch) -> None:
    cat = default_catalog()
    assert cat.resolve("copernicus_dem:elevation").stac_api == PC_STAC
    monkeypatch.setenv("TESSELLUM_STAC_API_COPERNICUS_DEM", "http://127.0.0.1:9999")
    reset_settings()  # settings are read from the environment on next use
    resolved = cat.resolve("copernicus_dem:elevation")
    assert resolved.stac_api == "http://127.0.0.1:9999"
    assert resolved.catalogued.stac_api == PC_STAC  # the catalog itself is unchanged
    assert cat.resolve("nasadem:elevation").stac_api == PC_STAC


def test_global_env_override_applies_to_every_stac_dataset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TESSELLUM_STAC_API", "http://127.0.0.1:8080")
    monkeypatch.setenv("TESSELLUM_WCS_URL_TANDEM_X", "http://127.0.0.1:8081/wcs")
    reset_settings()
    cat = default_catalog()
    assert {cat.resolve(i).stac_api for i in SHIPPED} == {"http://127.0.0.1:8080"}
    tdx = cat.resolve("tandem_x:elevation")
    assert tdx.wcs_url == "http://127.0.0.1:8081/wcs" and tdx.stac_api is None


def test_configure_and_settings_override_change_resolution() -> None:
    cat = default_catalog()
    with settings_override(stac_api_overrides={PC_STAC: "http://127.0.0.1:7000"}):
        assert cat.resolve("alos_dem:elevation").stac_api == "http://127.0.0.1:7000"
    assert cat.resolve("alos_dem:elevation").stac_api == PC_STAC
    configure(stac_api_overrides={"usgs_3dep": "http://127.0.0.1:7001"})
    assert cat.resolve("usgs_3dep:elevation").entry.stac_api == "http://127.0.0.1:7001"
    entry = cat.get("usgs_3dep:elevation")
    assert entry.stac_api == PC_STAC
    assert entry.with_overrides(configure()).stac_api == "http://127.0.0.1:7001"


def test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = default_catalog().resolve("tandem_x:elevation")
    with pytest.raises(ConfigurationError, match="TESSELLUM_TANDEMX_USER") as info:
        resolved.credentials()
    assert "sso.eoc.dlr.de" in str(info.value)
    monkeypatch.setenv("TESSELLUM_TANDEMX_USER", "me@example.org")
    monkeypatch.setenv("TESSELLUM_TANDEMX_PASSWORD", "secret")
    assert resolved.credentials()["TESSELLUM_TANDEMX_USER"] == "me@example.org"


# --- signing against a real local token server --------------------------------------------
class TokenServer:
    """A Planetary-Computer-like SAS token API on 127.0.0.1 that counts requests."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.status = 200
        self.body: str | None = None  # raw body overriding the JSON token
        self.lifetime_s = 3600
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                n = len(server.requests)
                expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=server.lifetime_s)
                payload = server.body or json.dumps(
                    {
                        "msedge.expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "token": f"se=x&sp=rl&sv=2024&sr=c&sig=tok{n}",
                    }
                )
                data = payload.encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/sas/v1/token"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.close()


BLOB = "https://elevationeuwest.blob.core.windows.net/copernicus-dem/COP30_hh/N41_00_W112_00.tif"


async def test_signer_appends_and_caches_tokens(token_server: TokenServer) -> None:
    signer = PlanetaryComputerSigner(token_server.url, retries=0)
    first = await signer.sign(BLOB)
    assert first == BLOB + "?se=x&sp=rl&sv=2024&sr=c&sig=tok1"
    assert token_server.requests == ["/api/sas/v1/token/elevationeuwest/copernicus-dem"]
    again = await signer.sign(BLOB.replace("N41", "N42"))
    assert again.endswith("sig=tok1") and len(token_server.requests) == 1  # cached
    other = await signer.sign("https://elevationeuwest.blob.core.windows.net/other/a.tif")
    assert other.endswith("sig=tok2")  # one token per (account, container)
    assert await signer.sign(first) == first  # already signed
    public = "https://example.com/data/cog.tif"
    assert await signer.sign(public) == public and len(token_server.requests) == 2


async def test_signer_refreshes_after_expiry(token_server: TokenServer) -> None:
    token_server.lifetime_s = 300
    now = [dt.datetime.now(dt.UTC).timestamp()]
    signer = PlanetaryComputerSigner(token_server.url, refresh_margin_s=60, clock=lambda: now[0])
    assert (await signer.sign(BLOB)).endswith("tok1")
    now[0] += 200  # 100 s left: still more than the margin
    assert (await signer.sign(BLOB)).endswith("tok1")
    now[0] += 60  # 40 s left: inside the margin
    assert (await signer.sign(BLOB)).endswith("tok2")
    assert len(token_server.requests) == 2


async def test_concurrent_signs_share_one_token_request(token_server: TokenServer) -> None:
    signer = PlanetaryComputerSigner(token_server.url)
    hrefs = [f"{BLOB}.{i}" for i in range(25)]
    signed = await asyncio.gather(*(signer.sign(h) for h in hrefs))
    assert all(s.endswith("sig=tok1") for s in signed)
    assert len(token_server.requests) == 1


async def test_sign_item_signs_every_asset(token_server: TokenServer) -> None:
    item = {
        "id": "N41_W112",
        "assets": {
            "data": {"href": BLOB, "type": "image/tiff"},
            "tilejson": {"href": "https://planetarycomputer.microsoft.com/api/data/v1/x"},
        },
    }
    signer = PlanetaryComputerSigner(token_server.url)
    signed = await signer.sign_item(item)
    assert signed["assets"]["data"]["href"].endswith("?se=x&sp=rl&sv=2024&sr=c&sig=tok1")
    assert signed["assets"]["tilejson"]["href"] == item["assets"]["tilejson"]["href"]
    assert item["assets"]["data"]["href"] == BLOB  # the input is not modified
    assert await NoSigner().sign_item(item) == item


async def test_path_style_local_host_is_signed(token_server: TokenServer) -> None:
    signer = PlanetaryComputerSigner(token_server.url, sign_hosts=("127.0.0.1",))
    href = "http://127.0.0.1:10000/devaccount/cogs/dem/N41.tif?x=1"
    assert await signer.sign(href) == href + "&se=x&sp=rl&sv=2024&sr=c&sig=tok1"
    assert token_server.requests == ["/api/sas/v1/token/devaccount/cogs"]


async def test_token_endpoint_failure_names_the_url(token_server: TokenServer) -> None:
    token_server.status = 503
    signer = PlanetaryComputerSigner(token_server.url, retries=1, backoff_s=0.01)
    with pytest.raises(ProtocolError) as info:
        await signer.sign(BLOB)
    url = f"{token_server.url}/elevationeuwest/copernicus-dem"
    assert url in str(info.value) and "503" in str(info.value)
    assert info.value.url == url and info.value.status == 503
    assert len(token_server.requests) == 2  # retried once
    token_server.status = 403
    with pytest.raises(ProtocolError, match="403"):
        await signer.sign(BLOB)
    assert len(token_server.requests) == 3  # a 4xx is not retried


async def test_malformed_token_response(token_server: TokenServer) -> None:
    token_server.body = "<html>maintenance</html>"
    signer = PlanetaryComputerSigner(token_server.url, retries=0)
    with pytest.raises(ProtocolError, match=r"not .*JSON"):
        await signer.sign(BLOB)


async def test_unreachable_token_endpoint() -> None:
    signer = PlanetaryComputerSigner("http://127.0.0.1:9/token", retries=0, timeout_s=2)
    with pytest.raises(ProtocolError, match=r"127\.0\.0\.1:9/token/elevationeuwest"):
        await signer.sign(BLOB)


async def test_signer_for_uses_settings(token_server: TokenServer) -> None:
    cat = default_catalog()
    assert isinstance(signer_for(cat.get("tandem_x:elevation")), NoSigner)
    with settings_override(pc_token_endpoint=token_server.url, sign_hosts=("127.0.0.1",)):
        resolved = cat.resolve("copernicus_dem:elevation")
        signer = resolved.signer()
        assert isinstance(signer, PlanetaryComputerSigner)
        assert resolved.signer() is signer  # shared: one token cache per configuration
        href = "http://127.0.0.1:1/acct/cont/tile.tif"
        assert (await signer.sign(href)).endswith("sig=tok1")
    assert signer_for(cat.get("copernicus_dem:elevation")) is not signer


def test_sign_sync(token_server: TokenServer) -> None:
    signer = PlanetaryComputerSigner(token_server.url)
    assert signer.sign_sync(BLOB).endswith("sig=tok1")


# --- CLI --------------------------------------------------------------------------------
@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("datasets")(datasets)

    @app.callback()
    def main() -> None:  # keeps "datasets" a subcommand, as on the real app
        pass

    return app


def test_cli_lists_datasets(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["datasets"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for ident in (*SHIPPED, "tandem_x:elevation"):
        assert ident in result.output
    assert "CC-BY-4.0" in result.output and "1″" in result.output


def test_cli_filters(cli: typer.Typer) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["datasets", "--kind", "categorical"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "esa_worldcover:land_cover" in out.output
    assert "nasadem" not in out.output
    out = runner.invoke(cli, ["datasets", "--provider", "tandem_x", "--json"])
    assert out.exit_code == 0
    rows = json.loads(out.output)
    assert [r["id"] for r in rows] == ["tandem_x:elevation"] and rows[0]["protocol"] == "wcs"
    out = runner.invoke(cli, ["datasets", "--raster-only", "--json"])
    assert len(json.loads(out.output)) == 7
    out = runner.invoke(cli, ["datasets", "--kind", "discrete"])
    assert out.exit_code != 0


def test_format_resolution() -> None:
    assert format_resolution(1 / 3600, "EPSG:4326") == "1″"
    assert format_resolution(1 / 10800, "EPSG:4269") == "0.333″"
    assert format_resolution(30.0, "EPSG:32633") == "30"


def test_module_functions_take_an_explicit_catalog() -> None:
    mine = Catalog([custom_entry()])
    assert [e.id for e in list_datasets(mine)] == ["my_org:ndvi"]
    assert get_dataset("my_org:ndvi", mine).protocol == "stac_cog"
    assert [p.slug for p in list_providers(mine)] == ["my_org"]
    assert list_datasets(kind="categorical")[0].id == "esa_worldcover:land_cover"
