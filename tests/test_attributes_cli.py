"""``tessellum extract``: vector file in, one row per geometry out."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import typer
from shapely.geometry import box
from typer.testing import CliRunner

from _attr_world import X0, Y0, build_world


def _use_world_engine(tmp_path, monkeypatch):
    """Point the default engine (what the CLI uses) at a fresh attribute world."""
    import tessellum.attributes as attrs
    from tessellum.attributes import AttributeEngine, NullResultCache, StaticCollectionSource

    aw = build_world(tmp_path / "w")
    eng = AttributeEngine(
        catalog=aw.catalog,
        cache=NullResultCache(),
        collections=StaticCollectionSource(aw.collections),
    )
    monkeypatch.setattr(attrs, "_engine", eng)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_extract_cli(tmp_path, monkeypatch, suffix):

    _use_world_engine(tmp_path, monkeypatch)
    hrus = gpd.GeoDataFrame(
        {"hru_id": [101, 102, 103]},
        geometry=[box(X0 + 0.1 * i, Y0 - 0.3, X0 + 0.1 * i + 0.08, Y0 - 0.2) for i in range(1, 4)],
        crs="EPSG:4326",
    )
    src = tmp_path / "hrus.gpkg"
    hrus.to_file(src)
    out = tmp_path / f"attributes{suffix}"
    app = _extract_app()
    res = CliRunner().invoke(
        app,
        [
            "--geometries",
            str(src),
            "--id-column",
            "hru_id",
            "--datasets",
            "copernicus_dem:elevation,esa_worldcover:land_cover",
            "--aggregation",
            "majority",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(df["hru_id"]) == [101, 102, 103]
    assert {
        "copernicus_dem__elevation_value",
        "esa_worldcover__land_cover_quality",
        "esa_worldcover__land_cover_coverage",
    } <= set(df.columns)
    assert df["esa_worldcover__land_cover_value"].isin([10, 20, 30, 40, 50]).all()
    assert not list(tmp_path.glob("*.part"))


def test_extract_cli_processes_same_table(tmp_path, monkeypatch):
    """``--processes 2`` (the zonal worker pool, used for >= 256 polygons) writes the
    table ``--processes 0`` writes."""
    import tessellum.attributes as attrs
    from _attr_world import random_polygons

    _use_world_engine(tmp_path, monkeypatch)
    sent = []
    submit = attrs._workers.submit_zonal
    monkeypatch.setattr(
        attrs._workers, "submit_zonal", lambda *a, **k: sent.append(1) or submit(*a, **k)
    )
    polys = random_polygons(300, seed=7)
    src = tmp_path / "hrus.gpkg"
    gpd.GeoDataFrame({"hru_id": range(len(polys))}, geometry=polys, crs="EPSG:4326").to_file(src)
    app = _extract_app()
    tables = []
    for n in ("0", "2"):
        out = tmp_path / f"attributes-{n}.parquet"
        res = CliRunner().invoke(
            app,
            [
                "--geometries", str(src), "--id-column", "hru_id",
                "--datasets", "copernicus_dem:elevation,esa_worldcover:land_cover",
                "--aggregation", "mean", "--out", str(out), "--no-progress", "--processes", n,
            ],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        tables.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert sent  # the second run did hand its passes to the workers
    assert attrs._workers._pool is None  # the CLI stops its workers


def _one_hru(tmp_path: Path) -> Path:
    """A GeoPackage of one HRU inside the world's DEM."""
    src = tmp_path / "hrus.gpkg"
    gpd.GeoDataFrame(
        {"hru_id": [1]}, geometry=[box(X0 + 0.1, Y0 - 0.3, X0 + 0.18, Y0 - 0.2)], crs="EPSG:4326"
    ).to_file(src)
    return src


def _extract_app() -> typer.Typer:
    """The ``tessellum extract`` command as a one-command app for CliRunner."""
    from tessellum.cli.extract import extract

    app = typer.Typer()
    app.command()(extract)
    return app


def test_extract_cli_output_folder(tmp_path, monkeypatch):
    """A missing --out folder is created (the table is not lost after the extraction);
    one that cannot be created is refused before any statistics are computed."""
    import tessellum.attributes as attrs

    _use_world_engine(tmp_path, monkeypatch)
    src = _one_hru(tmp_path)
    app = _extract_app()
    args = ["--geometries", str(src), "--datasets", "copernicus_dem:elevation", "--no-progress"]
    out = tmp_path / "new" / "nested" / "a.csv"
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert list(pd.read_csv(out)["row"]) == [0]

    calls = []
    monkeypatch.setattr(attrs, "batch_extract_sync", lambda *a, **k: calls.append(a))
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    res = CliRunner().invoke(app, [*args, "--out", str(blocked / "b.parquet")])
    assert res.exit_code == 2 and "folder of --out" in res.output, res.output
    assert not calls  # refused before extracting


def test_extract_cli_temp_file_is_unique(tmp_path, monkeypatch):
    """The table is staged under a name unique to the run: a file named like the old
    fixed ``OUT.part`` (another run's, or the user's) is neither overwritten nor removed."""

    _use_world_engine(tmp_path, monkeypatch)
    src = _one_hru(tmp_path)
    out = tmp_path / "t.csv"
    other = tmp_path / "t.csv.part"
    other.write_text("another run's table")
    app = _extract_app()
    args = ["--geometries", str(src), "--datasets", "copernicus_dem:elevation", "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert other.read_text() == "another run's table"
    assert list(pd.read_csv(out)["row"]) == [0]
    assert sorted(p.name for p in tmp_path.glob("*.part")) == ["t.csv.part"]


def test_extract_cli_every_dataset_failing_is_an_error(tmp_path, monkeypatch):
    """When every dataset fails upstream the command exits 1 naming the cause and writes
    nothing (it wrote a table of ids alone and exited 0); one failing dataset of two
    stays a warning."""
    import tessellum.attributes as attrs
    from tessellum.attributes import AttributeEngine, NullResultCache, StaticCollectionSource
    from tessellum.errors import UpstreamError

    aw = build_world(tmp_path / "w")
    down = UpstreamError("upstream said 503", url="http://up.example/dem")
    eng = AttributeEngine(
        catalog=aw.catalog,
        cache=NullResultCache(),
        collections=StaticCollectionSource({**aw.collections, "copernicus_dem:elevation": down}),
    )
    monkeypatch.setattr(attrs, "_engine", eng)
    src = _one_hru(tmp_path)
    app = _extract_app()
    out = tmp_path / "t.csv"
    args = ["--geometries", str(src), "--out", str(out), "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--datasets", "copernicus_dem:elevation"])
    assert res.exit_code == 1, res.output
    assert "every dataset failed" in res.output and "upstream said 503" in res.output
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    both = "copernicus_dem:elevation,esa_worldcover:land_cover"
    res = CliRunner().invoke(app, [*args, "--datasets", both])
    assert res.exit_code == 0 and "upstream said 503" in res.output, res.output
    assert "esa_worldcover__land_cover_value" in pd.read_csv(out).columns
