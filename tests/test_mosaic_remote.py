"""The Zarr/flow workflows on URLs (seed 004's "remote URL" inputs and output URIs):
inputs from a moto S3 server and an nginx HTTP server, outputs to S3, compared with the
local outputs of the same calls, and read back with plain zarr + obstore."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

pytest.importorskip("boto3")
gpd = pytest.importorskip("geopandas")
pytest.importorskip("zarr")

from _flow_mosaics import make_mosaic  # noqa: E402
from tessellum.collection import build_from_gti  # noqa: E402
from tessellum.errors import (  # noqa: E402
    NotFoundError,
    ProtocolError,
    TessellumError,
    ValidationError,
)
from tessellum.flow import predict_mosaic, vectorize_mosaic  # noqa: E402
from tessellum.mosaic import (  # noqa: E402
    build_gti_mosaic,
    build_mosaic,
    build_zarr_multiscales,
    mosaic_grid,
    open_mosaic,
)
from tessellum.store import clear_store_cache  # noqa: E402
from tessellum.testing.servers import HttpServer, S3Server, ServerUnavailable  # noqa: E402
from test_zarr_mosaic import CRS, _aoi, _index, _tiles  # noqa: E402

KW = {"crs": CRS, "chunk_size": 64, "shard_size": 128 * 128 * 2}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        server.start()
    except ServerUnavailable as exc:
        pytest.skip(f"S3 server unavailable: {exc}")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in server.env.items():
            mp.setenv(k, v)
        for k in ("AWS_SKIP_SIGNATURE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REQUEST_PAYER"):
            mp.delenv(k, raising=False)
        clear_store_cache()
        yield server
    clear_store_cache()
    server.stop()


@pytest.fixture
def bucket(s3: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test (moto keeps objects in memory)."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    s3.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _tiles(tmp_path_factory.mktemp("remote") / "tiles")


@pytest.fixture(scope="module")
def coll(tiles: dict[str, Path]) -> Any:
    return build_from_gti(_index(tiles), name="t", datetime_column="acquired", progress=False)


def _keys(s3: S3Server, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _get(s3: S3Server, bucket: str, key: str) -> bytes:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _plain_group(s3: S3Server, bucket: str, prefix: str) -> Any:
    """The store read with plain zarr over an obstore S3Store (no tessellum code)."""
    import zarr
    from zarr.storage import ObjectStore

    store = ObjectStore(s3.obstore(bucket, prefix=prefix), read_only=True)
    return zarr.open_group(store, mode="r", zarr_format=3)


def _assert_same_store(remote: Any, local: Any) -> None:
    """Every array (values, dtype, chunks, fill value, attrs) and the group attrs equal."""
    assert dict(remote.attrs) == dict(local.attrs)
    r_names, l_names = sorted(remote.array_keys()), sorted(local.array_keys())
    assert r_names == l_names
    for name in l_names:
        a, b = remote[name], local[name]
        assert a.dtype == b.dtype and a.shape == b.shape and a.chunks == b.chunks
        assert a.shards == b.shards and dict(a.attrs) == dict(b.attrs)
        np.testing.assert_array_equal(a[...], b[...])
        if a.dtype.kind == "f":
            assert np.isnan(a.fill_value) == np.isnan(b.fill_value)
        else:
            assert a.fill_value == b.fill_value


def _sorted_frame(df: Any) -> Any:
    df = df.assign(_wkb=df.geometry.to_wkb()).sort_values(["feature", "time", "area", "_wkb"])
    return df.drop(columns="_wkb").reset_index(drop=True)


# -- build_mosaic to S3, inputs by URL ---------------------------------------------------------


def test_build_mosaic_to_s3_equals_the_local_build(
    s3: S3Server, bucket: str, coll: Any, tmp_path: Path
) -> None:
    import zarr

    aoi_file = tmp_path / "aoi.parquet"
    _aoi().to_parquet(aoi_file)
    s3.client().upload_file(str(aoi_file), bucket, "in/aoi.parquet")
    s3.client().put_object(Bucket=bucket, Key="out/keep.txt", Body=b"a user's object")

    local = build_mosaic(coll, aoi_file, bands=["data"], output_dir=tmp_path / "out", **KW)
    remote = build_mosaic(
        coll, f"s3://{bucket}/in/aoi.parquet", bands=["data"], output_dir=f"s3://{bucket}/out",
        **KW,
    )  # fmt: skip
    assert remote.location[0] == f"s3://{bucket}/out/mosaic.zarr"
    _assert_same_store(
        _plain_group(s3, bucket, "out/mosaic.zarr"),
        zarr.open_group(local.location[0], mode="r", zarr_format=3),
    )
    # tessellum's reader gives the same Dataset as the local store's
    got, want = open_mosaic(remote.location[0]), open_mosaic(local.location[0])
    assert got.attrs == want.attrs and mosaic_grid(got) == mosaic_grid(want)
    np.testing.assert_array_equal(got["data"].values, want["data"].values)
    # the index: one GeoParquet object, the returned frame
    table = gpd.read_parquet(io.BytesIO(_get(s3, bucket, "out/mosaic.parquet")))
    assert table.drop(columns="location").equals(local.drop(columns="location"))
    assert table.location[0] == remote.location[0]
    # nothing else written: no temporary prefix left, no metadata above the store
    keys = _keys(s3, bucket)
    assert not [k for k in keys if not k.startswith(("in/", "out/mosaic.zarr/"))
                and k not in ("out/mosaic.parquet", "out/keep.txt")]  # fmt: skip
    assert _get(s3, bucket, "out/keep.txt") == b"a user's object"


def test_gti_index_by_s3_and_http_url(
    s3: S3Server, bucket: str, tiles: dict, tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    """A GTI index (GeoPackage on S3, GeoParquet over nginx; relative tile locations,
    resolved against the index's own folder) and the AOI (GeoJSON, FlatGeobuf) by URL
    give the mosaic of the same local files; the tiles are read from S3 / over http."""
    served = tmp_path / "served"
    served.mkdir()
    index = _index(tiles)
    index["location"] = [Path(p).name for p in index["location"]]  # relative to the index
    for name, path in tiles.items():
        s3.client().upload_file(str(path), bucket, f"gti/{name}.tif")
        shutil.copy(path, served / f"{name}.tif")
    index.to_parquet(served / "index.parquet")
    index.to_file(served / "index.gpkg", driver="GPKG")
    _aoi().to_file(served / "aoi.geojson", driver="GeoJSON")
    _aoi().to_file(served / "aoi.fgb", driver="FlatGeobuf")
    for name in ("index.gpkg", "aoi.fgb"):
        s3.client().upload_file(str(served / name), bucket, f"gti/{name}")
    local = build_gti_mosaic(
        served / "index.parquet", served / "aoi.geojson", ["data"], sort_column="quality",
        output_dir=tmp_path / "local", crs=CRS, chunk_size=64,
    )  # fmt: skip
    want = open_mosaic(local.location[0])["data"].values
    from_s3 = build_gti_mosaic(
        f"s3://{bucket}/gti/index.gpkg", f"s3://{bucket}/gti/aoi.fgb", ["data"],
        sort_column="quality", output_dir=f"s3://{bucket}/out", crs=CRS, chunk_size=64,
    )  # fmt: skip
    np.testing.assert_array_equal(open_mosaic(from_s3.location[0])["data"].values, want)
    # GDAL reads the downloaded GeoPackage under its own name: no extension warning
    assert not [w for w in recwarn if "extension" in str(w.message)]
    try:
        with HttpServer(served) as http:
            from_http = build_gti_mosaic(
                f"{http.url}/index.parquet", f"{http.url}/aoi.geojson", ["data"],
                sort_column="quality", output_dir=tmp_path / "http", crs=CRS, chunk_size=64,
            )  # fmt: skip
            paths = {r.path for r in http.requests()}
    except ServerUnavailable as exc:
        pytest.skip(f"HTTP server unavailable: {exc}")
    np.testing.assert_array_equal(open_mosaic(from_http.location[0])["data"].values, want)
    assert {"/index.parquet", "/aoi.geojson", "/a.tif"} <= paths  # tiles read over http


def test_mosaic_store_over_http_is_an_input(coll: Any, tmp_path: Path) -> None:
    """A store served by nginx (which cannot list) opens from its consolidated metadata
    and feeds predict_mosaic; the output goes to a local path."""
    index = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path / "srv", **KW)
    try:
        with HttpServer(tmp_path / "srv") as http:
            url = f"{http.url}/mosaic.zarr"
            ds = open_mosaic(url)
            np.testing.assert_array_equal(
                ds["data"].values, open_mosaic(index.location[0])["data"].values
            )
            out = predict_mosaic(url, _double, 8, 1, features=["data"], labels=["d"],
                                 inference_actor="numpy", output=tmp_path / "p.zarr")  # fmt: skip
            with pytest.raises(ValidationError, match="read-only"):
                predict_mosaic(url, _double, 8, 1, features=["data"], labels=["d"],
                               inference_actor="numpy")  # fmt: skip
    except ServerUnavailable as exc:
        pytest.skip(f"HTTP server unavailable: {exc}")
    src = open_mosaic(index.location[0])["data"].values.astype("float32")
    want = np.where(src != 0, 2 * src, np.nan)
    np.testing.assert_array_equal(open_mosaic(out)["d"].values, want)


def _double(x: np.ndarray) -> np.ndarray:
    return 2 * x


# -- chaining by URL ------------------------------------------------------------------------


def test_chain_build_predict_vectorize_multiscales_on_s3(
    s3: S3Server, bucket: str, coll: Any, tmp_path: Path
) -> None:
    import zarr

    def bright(x: np.ndarray) -> np.ndarray:  # speckles: polygons across block seams
        return (x % 5 == 0).astype("float32")

    outs = {}
    for where, base in (("local", str(tmp_path)), ("s3", f"s3://{bucket}/run")):
        index = build_mosaic(coll, _aoi(), bands=["data"], output_dir=f"{base}/m", **KW)
        pred = predict_mosaic(index, bright, 16, 2, features=["data"], labels=["bright"],
                              inference_actor="numpy", output=f"{base}/pred.zarr")  # fmt: skip
        vec = vectorize_mosaic(pred, ["bright"], 0.5, crs=CRS, output=f"{base}/vec.parquet")
        ms = build_zarr_multiscales(pred.location[0], levels=2)
        outs[where] = (index, pred, vec, ms)
    (_, lpred, lvec, lms), (_, rpred, rvec, rms) = outs["local"], outs["s3"]
    assert rpred.location[0] == f"s3://{bucket}/run/pred.zarr"
    assert rms == f"s3://{bucket}/run/pred.multiscales.zarr"
    # predictions and multiscales: identical stores (the source attr names each input)
    remote_pred = _plain_group(s3, bucket, "run/pred.zarr")
    local_pred = zarr.open_group(lpred.location[0], mode="r", zarr_format=3)
    assert remote_pred.attrs["source"] == f"s3://{bucket}/run/m/mosaic.zarr"
    assert local_pred.attrs["source"] == str(tmp_path / "m" / "mosaic.zarr")
    drop = {"source": None}
    assert {**remote_pred.attrs, **drop} == {**local_pred.attrs, **drop}
    for name in ("bright", "time", "x", "y", "spatial_ref"):
        np.testing.assert_array_equal(remote_pred[name][...], local_pred[name][...])
        assert dict(remote_pred[name].attrs) == dict(local_pred[name].attrs)
    for level in ("0", "1", "2"):
        _assert_same_store(
            _plain_group(s3, bucket, f"run/pred.multiscales.zarr/{level}"),
            zarr.open_group(lms, path=level, mode="r", zarr_format=3),
        )
    np.testing.assert_array_equal(
        open_mosaic(rms, group="1")["bright"].values, open_mosaic(lms, group="1")["bright"].values
    )
    # an S3 store in, a local store out; and an S3 input's default output beside it
    back = build_zarr_multiscales(rpred.location[0], output=tmp_path / "back.zarr", levels=2)
    for level in ("0", "1", "2"):
        np.testing.assert_array_equal(
            open_mosaic(back, group=level)["bright"].values,
            open_mosaic(lms, group=level)["bright"].values,
        )
    beside = predict_mosaic(outs["s3"][0].location[0], bright, 16, 2, features=["data"],
                            labels=["bright"], inference_actor="numpy")  # fmt: skip
    assert beside == f"s3://{bucket}/run/m/mosaic_predictions.zarr"
    np.testing.assert_array_equal(
        open_mosaic(beside)["bright"].values, open_mosaic(rpred.location[0])["bright"].values
    )
    # vectors: one GeoParquet object with the polygons of the local directory
    assert rvec == f"s3://{bucket}/run/vec.parquet"
    got = gpd.read_parquet(io.BytesIO(_get(s3, bucket, "run/vec.parquet")))
    want = gpd.read_parquet(lvec)
    assert len(want) > 5 and got.crs == want.crs
    a, b = _sorted_frame(got), _sorted_frame(want)
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert a.geometry.geom_equals_exact(b.geometry, 0).all()
    # no temporary prefix is left
    assert not [k for k in _keys(s3, bucket) if ".tmp-" in k]


# -- replacing and failures -----------------------------------------------------------------


def _store_objects(s3: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    return {k: _get(s3, bucket, k) for k in _keys(s3, bucket, prefix + "/")}


def test_replacing_removes_stale_objects_and_refuses_a_users_prefix(
    s3: S3Server, bucket: str, coll: Any, tmp_path: Path
) -> None:
    out = f"s3://{bucket}/out"
    big = build_mosaic(coll, _aoi(), bands=["data"], output_dir=out, **KW)
    n_big = len(_keys(s3, bucket, "out/mosaic.zarr/"))
    small_aoi = gpd.GeoDataFrame(geometry=[shapely.box(500500, 4599000, 501000, 4599500)], crs=CRS)
    small = build_mosaic(coll, small_aoi, bands=["data"], output_dir=out, **KW)
    local = build_mosaic(coll, small_aoi, bands=["data"], output_dir=tmp_path, **KW)
    assert small.location[0] == big.location[0]
    keys = _keys(s3, bucket, "out/mosaic.zarr/")
    assert len(keys) < n_big  # the old store's chunks beyond the new grid are gone
    # exactly the local store's files, no more
    local_files = sorted(
        "out/mosaic.zarr/" + p.relative_to(local.location[0]).as_posix()
        for p in Path(local.location[0]).rglob("*")
        if p.is_file()
    )
    assert keys == local_files
    np.testing.assert_array_equal(
        open_mosaic(small.location[0])["data"].values, open_mosaic(local.location[0])["data"].values
    )
    # a prefix holding a user's objects (or another Zarr store) is never replaced
    s3.client().put_object(Bucket=bucket, Key="user/mosaic.zarr/notes.txt", Body=b"mine")
    s3.client().put_object(Bucket=bucket, Key="other/mosaic.zarr/zarr.json",
                           Body=json.dumps({"zarr_format": 3, "node_type": "group"}))  # fmt: skip
    for prefix in ("user", "other"):
        with pytest.raises(ValidationError, match=rf"s3://{bucket}/{prefix}/mosaic\.zarr"):
            build_mosaic(coll, _aoi(), bands=["data"], output_dir=f"s3://{bucket}/{prefix}", **KW)
    assert _get(s3, bucket, "user/mosaic.zarr/notes.txt") == b"mine"
    assert _keys(s3, bucket, "other/") == ["other/mosaic.zarr/zarr.json"]
    src = make_mosaic(tmp_path / "v.zarr", {"p": np.ones((1, 4, 4), np.float32)}, chunk=4)
    s3.client().put_object(Bucket=bucket, Key="vec/other.parquet", Body=b"PAR1 not ours")
    with pytest.raises(ValidationError, match="not a vectorize output"):
        vectorize_mosaic(src, ["p"], 0.5, output=f"s3://{bucket}/vec/other.parquet")
    assert _get(s3, bucket, "vec/other.parquet") == b"PAR1 not ours"
    assert not [k for k in _keys(s3, bucket) if ".tmp-" in k]


def test_failure_while_writing_keeps_the_old_store(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    """A task failing mid-write: the temporary prefix is removed, the old store untouched."""
    src = make_mosaic(tmp_path / "in.zarr", {"p": np.arange(64 * 48, dtype=np.float32)
                                             .reshape(1, 64, 48)}, chunk=8)  # fmt: skip
    out = f"s3://{bucket}/pred.zarr"
    predict_mosaic(src, _double, 8, 1, features=["p"], labels=["d"], inference_actor="numpy",
                   output=out, chunk_multiplier=1)  # fmt: skip
    before = _store_objects(s3, bucket, "pred.zarr")
    calls = []

    def failing(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 20:
            raise RuntimeError("model failed mid-way")
        return 3 * x

    with pytest.raises(RuntimeError, match="mid-way"):
        predict_mosaic(src, failing, 8, 1, features=["p"], labels=["d"], batch_size=1,
                       inference_actor="numpy", output=out, chunk_multiplier=1)  # fmt: skip
    assert _store_objects(s3, bucket, "pred.zarr") == before
    assert _keys(s3, bucket) == sorted(before)


def test_storage_fault_mid_write_keeps_the_old_store(
    s3: S3Server, bucket: str, coll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object store fails a shard PUT after a few succeeded (a zarr WrapperStore
    over the real S3 store): a named tessellum error, the temporary prefix removed,
    the old store untouched."""
    from zarr.storage import WrapperStore

    import tessellum.mosaic.zarr_store as zs

    out = f"s3://{bucket}/out"
    build_mosaic(coll, _aoi(), bands=["data"], output_dir=out, **KW)
    before = _store_objects(s3, bucket, "out/mosaic.zarr")
    assert len([k for k in before if "/data/c/" in k]) > 4  # several shards
    real_store, puts = zs.zarr_store, []

    class Failing(WrapperStore):
        async def set(self, key: str, value: Any) -> None:
            if "/c/" in key:
                puts.append(key)
                if len(puts) == 3:
                    raise ConnectionAbortedError("connection aborted (injected)")
            await self._store.set(key, value)

    def failing_store(uri: Any, *, read_only: bool = False) -> Any:
        store = real_store(uri, read_only=read_only)
        return store if isinstance(store, str) else Failing(store)

    monkeypatch.setattr(zs, "zarr_store", failing_store)
    with pytest.raises(TessellumError, match=r"\.mosaic\.zarr\.tmp-.*aborted") as info:
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=out, **KW)
    assert len(puts) == 3 and isinstance(info.value, ProtocolError)
    monkeypatch.undo()
    assert _store_objects(s3, bucket, "out/mosaic.zarr") == before
    assert sorted(_keys(s3, bucket, "out/")) == sorted([*before, "out/mosaic.parquet"])


def test_failure_while_publishing_leaves_no_store(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server-side copy fails after a few objects (a wrapper around obstore's copy):
    no root zarr.json, no object at all is left at the target, nor the temporary prefix."""
    import obstore

    src = make_mosaic(tmp_path / "in.zarr", {"p": np.ones((1, 64, 48), np.float32)}, chunk=8)
    out = f"s3://{bucket}/pred.zarr"
    predict_mosaic(src, _double, 8, 1, features=["p"], labels=["d"], inference_actor="numpy",
                   output=out)  # fmt: skip
    real_copy, copied = obstore.copy_async, []

    async def flaky_copy(store: Any, from_: str, to: str, **kw: Any) -> None:
        if len(copied) == 5:
            raise ConnectionResetError("connection reset by peer (injected)")
        copied.append(to)
        await real_copy(store, from_, to, **kw)

    monkeypatch.setattr(obstore, "copy_async", flaky_copy)
    with pytest.raises(TessellumError, match=r"pred\.zarr"):
        predict_mosaic(src, _double, 8, 1, features=["p"], labels=["d"],
                       inference_actor="numpy", output=out)  # fmt: skip
    assert len(copied) == 5 and not any(k.endswith("pred.zarr/zarr.json") for k in copied)
    assert _keys(s3, bucket) == []
    monkeypatch.undo()
    with pytest.raises(NotFoundError):
        open_mosaic(out)


def test_transient_copy_failures_are_retried(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy failing once with a connection reset is retried (tessellum.store's policy):
    the store is published whole."""
    import obstore

    src = make_mosaic(tmp_path / "in.zarr", {"p": np.ones((1, 32, 32), np.float32)}, chunk=8)
    real_copy, failed = obstore.copy_async, []

    async def flaky_copy(store: Any, from_: str, to: str, **kw: Any) -> None:
        if to.endswith(("p.zarr/d/c/0/1/1", "p.zarr/zarr.json")) and to not in failed:
            failed.append(to)
            raise ConnectionResetError("connection reset by peer (injected)")
        await real_copy(store, from_, to, **kw)

    monkeypatch.setattr(obstore, "copy_async", flaky_copy)
    out = predict_mosaic(src, _double, 8, 1, features=["p"], labels=["d"],
                         inference_actor="numpy", output=f"s3://{bucket}/p.zarr")  # fmt: skip
    assert sorted(failed) == ["p.zarr/d/c/0/1/1", "p.zarr/zarr.json"]  # each failed once
    np.testing.assert_array_equal(open_mosaic(out)["d"].values, np.full((1, 32, 32), 2.0))
    assert not [k for k in _keys(s3, bucket) if ".tmp-" in k]


# -- errors ---------------------------------------------------------------------------------


def test_missing_bucket_key_and_store_are_named_errors(
    s3: S3Server, bucket: str, coll: Any, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="no-such-bucket"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir="s3://no-such-bucket/out", **KW)
    with pytest.raises(ValidationError, match="shard_size 6000000000 is larger"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=f"s3://{bucket}/big",
                     **{**KW, "shard_size": 6_000_000_000})  # fmt: skip
    assert _keys(s3, bucket) == []
    with pytest.raises(NotFoundError, match=rf"s3://{bucket}/in/missing\.parquet"):
        build_mosaic(coll, f"s3://{bucket}/in/missing.parquet", bands=["data"],
                     output_dir=tmp_path, **KW)  # fmt: skip
    with pytest.raises(NotFoundError, match=rf"s3://{bucket}/none\.zarr"):
        open_mosaic(f"s3://{bucket}/none.zarr")
    with pytest.raises(NotFoundError, match=rf"s3://{bucket}/none\.zarr"):
        vectorize_mosaic(f"s3://{bucket}/none.zarr", ["p"], 0.5)
    with pytest.raises(NotFoundError, match=rf"s3://{bucket}/m\.pt"):
        predict_mosaic(make_mosaic(tmp_path / "m.zarr", {"p": np.ones((1, 8, 8), "f4")}),
                       f"s3://{bucket}/m.pt", 4, 1, features=["p"], labels=["q"])  # fmt: skip
    src = make_mosaic(tmp_path / "e.zarr", {"p": np.ones((1, 8, 8), np.float32)})
    with pytest.raises(NotFoundError, match="no-such-bucket"):
        predict_mosaic(src, _double, 4, 1, features=["p"], labels=["q"],
                       inference_actor="numpy", output="s3://no-such-bucket/p.zarr")  # fmt: skip
    with pytest.raises(NotFoundError, match="no-such-bucket"):
        vectorize_mosaic(src, ["p"], 0.5, output="s3://no-such-bucket/v.parquet")


def test_unreachable_endpoint_and_403_are_named_errors(
    s3: S3Server, coll: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessellum.testing.servers._process import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ["AWS_ENDPOINT_URL"])
    clear_store_cache()
    try:
        with pytest.raises(ProtocolError, match=r"s3://b/out/mosaic\.zarr"):
            build_mosaic(coll, _aoi(), bands=["data"], output_dir="s3://b/out", **KW)
        with pytest.raises(ProtocolError, match=r"s3://b/m\.zarr"):
            open_mosaic("s3://b/m.zarr")
    finally:
        clear_store_cache()
    (tmp_path / "srv" / "private").mkdir(parents=True)  # nginx: 403 for a folder's index
    try:
        with HttpServer(tmp_path / "srv", backend="nginx") as http:
            with pytest.raises(ProtocolError, match="private") as info:
                build_mosaic(coll, f"{http.url}/private/", bands=["data"],
                             output_dir=tmp_path, **KW)  # fmt: skip
            assert info.value.status == 403
    except ServerUnavailable as exc:
        pytest.skip(f"nginx unavailable: {exc}")


# -- model files by URL, vector outputs replaced --------------------------------------------


def test_model_files_by_s3_and_http_url(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    """A torch.export program on S3 and a TorchScript file over nginx predict what the
    same files give from local paths."""
    torch = pytest.importorskip("torch")
    from test_flow_predict import _mean3

    x = np.random.default_rng(5).random((1, 24, 24)).astype(np.float32)
    src = make_mosaic(tmp_path / "f.zarr", {"v": x}, nodata={"v": np.nan}, chunk=8)
    models = tmp_path / "models"
    models.mkdir()
    program = torch.export.export(_mean3(), (torch.zeros(1, 1, 16, 16),))
    torch.export.save(program, str(models / "mean3.pt2"))
    torch.jit.save(torch.jit.script(_mean3()), str(models / "mean3.pt"))
    s3.client().upload_file(str(models / "mean3.pt2"), bucket, "models/mean3.pt2")
    kw = {"features": ["v"], "labels": ["m"], "chunk_multiplier": 1, "batch_size": 1}

    def run(model: str, name: str) -> np.ndarray:
        out = predict_mosaic(src, model, 16, 2, output=tmp_path / name, **kw)
        return open_mosaic(out)["m"].values

    want_pt2 = run(str(models / "mean3.pt2"), "a.zarr")
    np.testing.assert_array_equal(run(f"s3://{bucket}/models/mean3.pt2", "b.zarr"), want_pt2)
    want_pt = run(str(models / "mean3.pt"), "c.zarr")
    assert np.isfinite(want_pt).all()
    try:
        with HttpServer(models) as http:
            got = run(f"{http.url}/mean3.pt", "d.zarr")
    except ServerUnavailable as exc:
        pytest.skip(f"HTTP server unavailable: {exc}")
    np.testing.assert_array_equal(got, want_pt)


def test_vector_output_on_s3_is_replaced(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    """A second run replaces the first run's object (one PUT); a run with no foreground
    returns None and leaves it."""
    rng = np.random.default_rng(2)
    src = make_mosaic(tmp_path / "s.zarr", {"p": rng.random((1, 30, 30)).astype("f4")}, chunk=8)
    out = f"s3://{bucket}/v/vec.parquet"
    assert vectorize_mosaic(src, ["p"], 0.9, output=out) == out
    first = gpd.read_parquet(io.BytesIO(_get(s3, bucket, "v/vec.parquet")))
    vectorize_mosaic(src, ["p"], 0.5, output=out)
    second = gpd.read_parquet(io.BytesIO(_get(s3, bucket, "v/vec.parquet")))
    want = gpd.read_parquet(vectorize_mosaic(src, ["p"], 0.5, output=tmp_path / "v.parquet"))
    assert second["area"].sum() > first["area"].sum() and len(second) == len(want)
    assert second["area"].sum() == pytest.approx(want["area"].sum())
    assert vectorize_mosaic(src, ["p"], 2.0, output=out) is None
    assert _keys(s3, bucket) == ["v/vec.parquet"]


def test_dask_workers_write_the_s3_store(
    s3: S3Server, bucket: str, coll: Any, tmp_path: Path
) -> None:
    """Shards and prediction blocks run as Dask tasks that write the temporary prefix by
    URL; the published stores equal the local, single-process ones."""
    distributed = pytest.importorskip("distributed")
    kw = {**KW, "chunk_size": 32, "shard_size": 64 * 64 * 2}
    local = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, **kw)
    lpred = predict_mosaic(local, _double, 8, 1, features=["data"], labels=["d"],
                           inference_actor="numpy", output=tmp_path / "p.zarr")  # fmt: skip
    with (
        distributed.LocalCluster(
            processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        index = build_mosaic(coll, _aoi(), bands=["data"], output_dir=f"s3://{bucket}/d",
                             client=client, **kw)  # fmt: skip
        pred = predict_mosaic(index, _double, 8, 1, features=["data"], labels=["d"],
                              inference_actor="numpy", output=f"s3://{bucket}/d/p.zarr",
                              client=client)  # fmt: skip
    a = open_mosaic(local.location[0])["data"].values
    assert a.shape[1] > 64 and a.shape[2] > 64  # several shards, so several tasks
    np.testing.assert_array_equal(open_mosaic(index.location[0])["data"].values, a)
    np.testing.assert_array_equal(
        open_mosaic(pred.location[0])["d"].values, open_mosaic(lpred.location[0])["d"].values
    )


def test_file_urls_are_local_paths(
    coll: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``file://`` output folders and stores are the local paths they name (not a folder
    called ``file:`` in the working directory)."""
    monkeypatch.chdir(tmp_path)
    url = (tmp_path / "out").as_uri()
    index = build_mosaic(coll, _aoi(), bands=["data"], output_dir=url, **KW)
    assert index.location[0] == str(tmp_path / "out" / "mosaic.zarr")
    ms = build_zarr_multiscales(f"{url}/mosaic.zarr", output=f"{url}/ms.zarr", levels=1)
    assert Path(ms) == tmp_path / "out" / "ms.zarr"
    np.testing.assert_array_equal(
        open_mosaic(f"{url}/ms.zarr", group="0")["data"].values,
        open_mosaic(index.location[0])["data"].values,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_gti_index_url_is_read_with_the_cloud_config(
    s3: S3Server, bucket: str, tiles: dict, coll: Any, tmp_path: Path
) -> None:
    """An index at an https URL that the collection's ``cloud_config`` rewrites to S3:
    the index and its relative tiles are read from the bucket."""
    from tessellum.store import CloudConfig

    index = _index(tiles)
    index["location"] = [Path(p).name for p in index["location"]]
    for name, path in tiles.items():
        s3.client().upload_file(str(path), bucket, f"cc/{name}.tif")
    index.to_parquet(tmp_path / "index.parquet")
    s3.client().upload_file(str(tmp_path / "index.parquet"), bucket, "cc/index.parquet")
    cfg = CloudConfig(rewrites={"https://data.example.com/": f"s3://{bucket}/"})
    got = build_from_gti("https://data.example.com/cc/index.parquet", name="t",
                         datetime_column="acquired", cloud_config=cfg, progress=False)  # fmt: skip
    hrefs = [a[0][1]["href"] for a in got.table.column("assets").to_pylist()]
    assert sorted(hrefs) == [f"https://data.example.com/cc/{n}.tif" for n in "abc"]
    a = got.read_window(bounds=(500400, 4597000, 501000, 4599000), bands=["data"])
    b = coll.read_window(bounds=(500400, 4597000, 501000, 4599000), bands=["data"])
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_multiscale_levels_over_http(tmp_path: Path) -> None:
    """Each level group of a multiscale store carries its own consolidated metadata, so
    a level opens from an http(s) server (which cannot list) as from the local store."""
    rng = np.random.default_rng(4)
    src = make_mosaic(tmp_path / "srv" / "m.zarr",
                      {"p": rng.random((1, 64, 48)).astype(np.float32)}, chunk=16)  # fmt: skip
    ms = build_zarr_multiscales(src)
    try:
        with HttpServer(tmp_path / "srv") as http:
            for level in ("0", "1", "2"):
                got = open_mosaic(f"{http.url}/m.multiscales.zarr", group=level)
                want = open_mosaic(ms, group=level)
                assert got.attrs == want.attrs and mosaic_grid(got) == mosaic_grid(want)
                np.testing.assert_array_equal(got["p"].values, want["p"].values)
            with pytest.raises(NotFoundError, match=r"9/zarr\.json"):
                open_mosaic(f"{http.url}/m.multiscales.zarr", group="9")
    except ServerUnavailable as exc:
        pytest.skip(f"HTTP server unavailable: {exc}")


def test_recipe_to_s3_equals_the_local_recipe(
    s3: S3Server, bucket: str, served: Any, tmp_path: Path
) -> None:
    """build_and_predict_mosaic_recipe with an s3:// output_dir: the mosaic, its index,
    the predictions and the returned table land in the bucket, equal to a local run."""
    from tessellum.config import settings_override
    from tessellum.flow import build_and_predict_mosaic_recipe

    bbox = (-113.9, 39.8, -113.75, 39.95)
    with settings_override(stac_api=served.stac_url):
        local = build_and_predict_mosaic_recipe(
            bbox, model_recipe="water_mask", output_dir=tmp_path, chunk_size=64
        )
        remote = build_and_predict_mosaic_recipe(
            bbox, model_recipe="water_mask", output_dir=f"s3://{bucket}/r", chunk_size=64
        )
    assert remote.location[0] == f"s3://{bucket}/r/water_mask.zarr"
    assert remote.mosaic_location[0] == f"s3://{bucket}/r/water_mask_mosaic.zarr"
    want = open_mosaic(local.location[0])["water"].values
    assert (want == 1).any() and (want == 0).any()
    np.testing.assert_array_equal(open_mosaic(remote.location[0])["water"].values, want)
    table = gpd.read_parquet(io.BytesIO(_get(s3, bucket, "r/water_mask.parquet")))
    cols = ["location", "mosaic_location"]
    assert table.drop(columns=cols).equals(local.drop(columns=cols))
    assert table[cols].iloc[0].tolist() == remote[cols].iloc[0].tolist()
    assert {k.split("/")[1].split(".")[0] for k in _keys(s3, bucket)} == {
        "water_mask", "water_mask_mosaic"
    }  # fmt: skip
