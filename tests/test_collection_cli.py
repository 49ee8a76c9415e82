"""``tessellum build stac|table`` and ``tessellum info`` (typer CliRunner, real servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from tessellum.cli import build
from tessellum.collection import load


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The commands registered as the lead registers them in ``tessellum.cli``."""
    app = typer.Typer()
    app.add_typer(build.app, name="build")
    app.command("info")(build.info)
    return app


def _run(cli: typer.Typer, *args: str) -> Any:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_build_stac_and_info(cli: typer.Typer, served: Any, tmp_path: Path) -> None:
    out = tmp_path / "s2"
    res = _run(
        cli, "build", "stac", served.stac_url, "sentinel-2-l2a", "--name", "s2-jan",
        "--dates", "2024-01-01/2024-01-31", "--bbox", "-114.2,41.9,-114.1,42.2",
        "--band", "B04=red", "--band", "B08=nir", "-o", out, "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "B04" in res.output and "3 records" in res.output and str(out) in res.output
    coll = load(out)
    assert coll.name == "s2-jan" and coll.bands == ["B04", "B08"] and len(coll) == 3
    res = _run(cli, "info", out)
    assert res.exit_code == 0, res.output
    assert "s2-jan" in res.output and "uint16" in res.output and "deflate" in res.output
    res = _run(cli, "info", out, "--json")
    assert json.loads(res.output)["records"] == 3


def test_build_stac_band_index_and_workspace(cli: typer.Typer, served: Any, tmp_path: Path) -> None:
    args = [
        "build", "stac", served.stac_url, "naip", "--band", "red=image", "--band", "nir=image",
        "--band-index", "red=0", "--band-index", "nir=3", "--workspace", tmp_path / "ws",
        "-o", tmp_path / "naip", "--no-progress",
    ]  # fmt: skip
    assert _run(cli, *args).exit_code == 0
    coll = load(tmp_path / "naip")
    assert coll.bands == ["red", "nir"] and len(coll) == 5
    assert len(list((tmp_path / "ws").iterdir())) == 1  # the cached build


def test_build_stac_errors_are_messages(cli: typer.Typer, served: Any, tmp_path: Path) -> None:
    res = _run(cli, "build", "stac", served.stac_url, "naip", "--bbox", "1,2,3")
    assert res.exit_code != 0 and "west,south,east,north" in res.output
    res = _run(cli, "build", "stac", served.stac_url, "naip", "--query", "{bad")
    assert res.exit_code != 0 and "not JSON" in res.output
    res = _run(cli, "build", "stac", "http://127.0.0.1:9", "naip", "-o", tmp_path / "x")
    assert res.exit_code == 1 and "error:" in res.output and "127.0.0.1:9" in res.output
    # nothing matches (a typo'd collection): an error, and no empty collection saved
    res = _run(cli, "build", "stac", served.stac_url, "naipp", "-o", tmp_path / "empty")
    assert res.exit_code == 1 and "collection 'naipp' not found" in res.output
    assert "'naip'" in res.output  # the collections the API has
    assert not (tmp_path / "empty").exists()


def test_build_table_and_info_errors(
    cli: typer.Typer, world: Any, served: Any, tmp_path: Path
) -> None:
    edge = world.files_of("edge-cases")
    src = tmp_path / "records.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [f.key.split("/")[1] for f in edge],
                "href": [served.href(f.key) for f in edge],
                "quality": list(range(len(edge))),
            }
        ),
        src,
    )
    out = tmp_path / "edge"
    with pytest.warns(Warning, match="band assets failed"):
        res = _run(cli, "build", "table", src, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "band assets failed" in res.output
    coll = load(out)
    assert coll.name == "records" and len(coll) == len(edge)
    res = _run(cli, "info", out, "--errors")
    assert res.exit_code == 0 and "garbage" in res.output and "not a TIFF" in res.output
    res = _run(cli, "info", out, "--errors", "--json")  # --errors is not dropped by --json
    failed = json.loads(res.output)["failed_assets"]
    assert failed and {"id", "band", "error"} == set(failed[0])
    assert failed == coll.errors().to_pylist()
    res = _run(cli, "info", tmp_path / "missing")
    assert res.exit_code == 1 and "no collection" in res.output


def test_option_parsers() -> None:
    assert build.parse_bbox("179,-18,-179,-16") == (179.0, -18.0, -179.0, -16.0)
    assert build.parse_date_range("2024-01-01/..") == ("2024-01-01", None)
    assert build.parse_date_range("/2024-01-31") == (None, "2024-01-31")
    assert build.parse_pairs(["R=0", "N=3"], option="x", as_int=True) == {"R": 0, "N": 3}
    with pytest.raises(typer.BadParameter):
        build.parse_pairs(["R"], option="--band")
    with pytest.raises(typer.BadParameter):
        build.parse_date_range("2024-01-01")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "--geometries", "{tmp}/none.geojson", "--datasets",
          "copernicus_dem:elevation", "--out", "{tmp}/e.csv"], "cannot read --geometries"),
        (["extract-raster", "copernicus_dem:elevation", "--bbox", "-112.05", "41.95",
          "-111.95", "42.05", "--out", "/proc/nope"], "error:"),
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--log-level", "foo"], "--log-level"),
        (["world", "list", "--size", "huge"], "--size"),
    ],
    ids=["missing-geometries", "unwritable-out", "port", "log-level", "world-size"],
)  # fmt: skip
def test_user_errors_are_one_line_not_tracebacks(tmp_path: Path, args, message) -> None:
    """The console script ends on a user's error with a message and a non-zero exit
    code, never a Python traceback, and leaves no partial output."""
    import subprocess
    import sys

    argv = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", "tessellum.cli", *argv], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not list(tmp_path.glob("*.part"))


def test_extract_raster_error_keeps_brackets_on_one_line(tmp_path: Path) -> None:
    """The error names the bad dataset id verbatim ("[...]" is not eaten as rich markup)
    on a single line, however long (not wrapped at 80 columns)."""
    import subprocess
    import sys

    bad = "no_such_provider[v2]:" + "x" * 90
    argv = ["extract-raster", bad, "--bbox", "0", "0", "1", "1", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-m", "tessellum.cli", *argv], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"unknown dataset {bad!r}" in lines[0]


def test_build_stac_bad_max_items_and_filter(cli: typer.Typer, served: Any, tmp_path: Path) -> None:
    """``--max-items 0``/``-1`` is refused by name (it read as "no items match"), in
    the library too; a multi-line parser message (CQL2) is printed on one line."""
    from tessellum.collection import build_from_stac
    from tessellum.errors import ValidationError

    for n in ("0", "-1"):
        res = _run(cli, "build", "stac", served.stac_url, "naip", "--max-items", n,
                   "-o", tmp_path / "m", "--no-progress")  # fmt: skip
        assert res.exit_code == 2 and "--max-items" in res.output, res.output
    with pytest.raises(ValidationError, match=r"max_items .* got -1"):
        build_from_stac(name="m", stac_api=served.stac_url, collection="naip", max_items=-1)
    res = _run(cli, "build", "stac", served.stac_url, "naip", "--filter", "garbage (((",
               "-o", tmp_path / "f", "--no-progress")  # fmt: skip
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: filter:"), res.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "f").exists()


def test_build_refuses_a_bad_output_before_building(cli: typer.Typer, tmp_path: Path) -> None:
    """An --output that is a user's folder, a file or a URL is refused before any
    request: here the STAC API and the record table do not even exist."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    afile = tmp_path / "a.txt"
    afile.write_text("keep")
    for out, what in ((mine, "not a collection"), (afile, "is a file"), ("s3://b/c", "URL")):
        res = _run(cli, "build", "stac", "http://127.0.0.1:9", "naip", "-o", out, "--no-progress")
        assert res.exit_code == 1 and what in res.output, res.output
        res = _run(cli, "build", "table", tmp_path / "none.parquet", "-o", out, "--no-progress")
        assert res.exit_code == 1 and what in res.output, res.output
    assert (mine / "notes.txt").read_text() == "keep" and afile.read_text() == "keep"


def test_extract_raster_refuses_a_url_output(tmp_path: Path, monkeypatch) -> None:
    """``--out s3://b/x`` (and ``output_dir="s3://b/x"``) is refused by name before any
    request; it used to become the local folder ``s3:/b/x`` under the cwd."""
    import subprocess
    import sys

    from tessellum.errors import ValidationError
    from tessellum.mosaic import extract_raster_sync

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match=r"output_dir 's3://b/x' is a URL"):
        extract_raster_sync(
            "copernicus_dem:elevation", (-112.05, 41.95, -111.95, 42.05), "s3://b/x"
        )
    argv = ["extract-raster", "copernicus_dem:elevation", "--bbox", "-112.05", "41.95",
            "-111.95", "42.05", "--out", "s3://b/x"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "tessellum.cli", *argv], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1 and "'s3://b/x' is a URL" in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())
