"""predict_mosaic: a model that is a known function gives that function of the whole
mosaic at every pixel (block seams invisible), nodata stays nodata, merge modes do what
the docs say, outputs keep the mosaic layout and are written atomically."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from _flow_mosaics import UTM, make_mosaic
from tessellum.errors import ConfigurationError, ValidationError

xr = pytest.importorskip("xarray")
torch = pytest.importorskip("torch")

from tessellum.flow import predict_mosaic  # noqa: E402

H, W = 45, 50


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the output opens without any warning
        return xr.open_zarr(path)


@pytest.fixture
def bands():
    rng = np.random.default_rng(4)
    a = rng.random((2, H, W)).astype(np.float32)
    b = (rng.random((2, H, W)) * 100).astype(np.int16)
    a[0, 7, 9] = -9999.0  # nodata of a
    b[1, 30, 41] = 0  # nodata of b
    return a, b


@pytest.fixture
def mosaic(tmp_path, bands):
    a, b = bands
    return make_mosaic(
        tmp_path / "m.zarr",
        {"a": a, "b": b},
        nodata={"a": -9999.0, "b": 0},
        times=["2024-01-01", "2024-06-01"],
    )


def _weighted_sum_model():
    conv = torch.nn.Conv2d(2, 2, 1, bias=True)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([[2.0, 0.5], [-1.0, 0.25]]).reshape(2, 2, 1, 1)
        conv.bias[:] = torch.tensor([1.0, 0.0])
    return conv


def test_1x1_conv_is_the_weighted_band_sum_at_every_pixel(mosaic, bands, tmp_path):
    a, b = bands
    out = predict_mosaic(
        mosaic, _weighted_sum_model(), 12, 2, features=["a", "b"], labels=["s", "d"],
        chunk_multiplier=1, batch_size=3, output=tmp_path / "p.zarr",
    )  # fmt: skip
    assert out == str(tmp_path / "p.zarr")
    ds = _open(out)
    af, bf = a.astype(np.float64), b.astype(np.float64)
    nodata = (a == -9999.0) | (b == 0)
    for name, want in (("s", 2 * af + 0.5 * bf + 1), ("d", -af + 0.25 * bf)):
        got = ds[name].values
        assert got.dtype == np.float32 and got.shape == (2, H, W)
        assert np.array_equal(np.isnan(got), nodata)
        np.testing.assert_allclose(got[~nodata], want[~nodata], rtol=1e-5, atol=1e-4)


def _mean3():
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[:] = 1.0 / 9.0
    return conv


def _numpy_mean3(x: np.ndarray) -> np.ndarray:
    """The 3x3 mean of a 2-D array with numpy's reflect padding at the edges."""
    p = np.pad(x.astype(np.float64), 1, mode="reflect")
    h, w = x.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def test_torchscript_3x3_mean_filter_has_invisible_block_seams(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.random((1, 53, 61)).astype(np.float32)
    x[0, 40, 20] = np.nan  # float nodata: NaN
    src = make_mosaic(tmp_path / "f.zarr", {"v": x}, nodata={"v": np.nan}, chunk=8)
    script = tmp_path / "mean3.pt"
    torch.jit.save(torch.jit.script(_mean3()), str(script))
    out = predict_mosaic(
        src, str(script), 16, 2, features=["v"], labels=["m"], chunk_multiplier=1,
        output=tmp_path / "m.zarr",
    )  # fmt: skip
    got = _open(out)["m"].values[0]
    want = _numpy_mean3(np.nan_to_num(x[0]))  # nodata pixels feed the model zeros
    assert np.isnan(got[40, 20]) and np.isnan(got).sum() == 1
    ok = ~np.isnan(got)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-6)
    # away from the nodata pixel the filter is the plain 3x3 mean of the data
    far = np.ones_like(ok)
    far[39:42, 19:22] = False
    np.testing.assert_allclose(got[far], _numpy_mean3(x[0])[far], rtol=1e-5, atol=1e-6)


def test_a_torch_export_program_file_is_a_model(tmp_path):
    """A ``torch.export`` program saved as ``.pt2`` (TorchScript's successor) loads as a
    model and gives the filter's values, as the TorchScript file does."""
    rng = np.random.default_rng(11)
    x = rng.random((1, 24, 24)).astype(np.float32)
    src = make_mosaic(tmp_path / "f.zarr", {"v": x}, nodata={"v": np.nan}, chunk=8)
    program = torch.export.export(_mean3(), (torch.zeros(1, 1, 16, 16),))
    path = tmp_path / "mean3.pt2"
    torch.export.save(program, str(path))
    out = predict_mosaic(src, str(path), 16, 2, features=["v"], labels=["m"],
                         chunk_multiplier=1, batch_size=1, output=tmp_path / "m.zarr")  # fmt: skip
    np.testing.assert_allclose(_open(out)["m"].values[0], _numpy_mean3(x[0]), rtol=1e-5, atol=1e-6)


def test_clip_too_small_for_the_receptive_field_shows_seams(tmp_path):
    """The control of the test above: without a clip the zero padding of each patch
    leaks into its edge pixels, so the result differs from the whole-array filter."""
    rng = np.random.default_rng(7)
    x = rng.random((1, 32, 32)).astype(np.float32)
    src = make_mosaic(tmp_path / "f.zarr", {"v": x}, chunk=8)
    out = predict_mosaic(src, _mean3(), 8, 0, features=["v"], labels=["m"], chunk_multiplier=1)
    got = _open(out)["m"].values[0]
    assert not np.allclose(got, _numpy_mean3(x[0]), atol=1e-4)


def _position_model(x: np.ndarray) -> np.ndarray:
    """Every pixel of a patch gets the (row, col) bands' value at its centre's corner."""
    clip = 1
    corner = x[:, :, clip, clip]
    return np.broadcast_to(corner[:, :, None, None], x.shape).copy()


@pytest.mark.parametrize(("merge_mode", "overlap"), [("first", 4.0), ("max", 6.0), ("mean", 5.0)])
def test_merge_modes_on_overlapping_centres(tmp_path, merge_mode, overlap):
    # patch 6, clip 1: centres 4 wide start at 0, 4 and (moved back to end at 10) 6;
    # rows/cols 6-7 are covered by the centres starting at 4 and 6
    n = 10
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float32)
    src = make_mosaic(tmp_path / "pos.zarr", {"r": rows[None], "c": cols[None]}, chunk=16)
    out = predict_mosaic(
        src, _position_model, 6, 1, features=["r", "c"], labels=["r0", "c0"],
        inference_actor="numpy", merge_mode=merge_mode, batch_size=2,
    )  # fmt: skip
    ds = _open(out)
    want = np.array([0, 0, 0, 0, 4, 4, overlap, overlap, 6, 6], np.float32)
    np.testing.assert_array_equal(ds["r0"].values[0], np.repeat(want[:, None], n, axis=1))
    np.testing.assert_array_equal(ds["c0"].values[0], np.repeat(want[None, :], n, axis=0))


def test_edges_are_predicted_from_reflected_input(tmp_path):
    """The first centre starts at the mosaic's first pixel: its patch reads the row
    above the mosaic, which is the mirrored row 1 (numpy's reflect)."""
    rows = np.mgrid[0:10, 0:10][0].astype(np.float32)

    def top_left_of_patch(x):
        return np.broadcast_to(x[:, :1, :1, :1], (x.shape[0], 1, *x.shape[2:])).copy()

    src = make_mosaic(tmp_path / "e.zarr", {"r": rows[None]}, chunk=16)
    out = predict_mosaic(
        src, top_left_of_patch, 6, 1, features=["r"], labels=["t"], inference_actor="numpy"
    )
    got = _open(out)["t"].values[0, :, 0]
    # centres at rows 0, 4, 6 read from rows -1 (= 1), 3, 5; rows 6-7 mean of 3 and 5
    np.testing.assert_array_equal(got, [1, 1, 1, 1, 3, 3, 4, 4, 5, 5])


def test_output_layout_matches_the_input_mosaic(mosaic, tmp_path):
    out = predict_mosaic(
        mosaic, _weighted_sum_model(), 12, 2, features=["a", "b"], labels=["s", "d"],
        extract_labels=["d"], output_chunk_size=16, chunk_multiplier=1,
    )  # fmt: skip
    assert out == str(tmp_path / "m_predictions.zarr")
    src, ds = _open(mosaic), _open(out)
    assert list(ds.data_vars) == ["d"]
    assert ds["d"].dims == ("time", "y", "x")
    assert ds["d"].encoding["chunks"] == (1, 16, 16)
    assert np.isnan(ds["d"].encoding["_FillValue"]) and np.isnan(ds["d"].attrs["nodata"])
    assert ds["d"].attrs["grid_mapping"] == "spatial_ref"
    for c in ("time", "y", "x"):
        np.testing.assert_array_equal(ds[c].values, src[c].values)
    assert ds["spatial_ref"].attrs == src["spatial_ref"].attrs
    assert ds.attrs["crs"] == "EPSG:32612"
    assert ds.attrs["transform"] == list(UTM)[:6]
    assert ds.attrs["tessellum_mosaic"] == 1


def test_skip_xy_coords_mosaic(tmp_path):
    x = np.ones((1, 9, 9), np.float32)
    src = make_mosaic(tmp_path / "n.zarr", {"v": x}, skip_xy_coords=True)
    out = predict_mosaic(
        src, lambda a: a * 3, 4, 1, features="v", labels="t", inference_actor="numpy"
    )
    ds = _open(out)
    assert "x" not in ds.coords and "y" not in ds.coords
    np.testing.assert_array_equal(ds["t"].values, 3 * x)


def test_dask_client_gives_the_local_result(mosaic, tmp_path):
    distributed = pytest.importorskip("distributed")
    model = torch.jit.script(_weighted_sum_model())  # a ScriptModule in memory
    local = predict_mosaic(
        mosaic, model, 12, 2, features=["a", "b"], labels=["s", "d"], chunk_multiplier=1,
        output=tmp_path / "local.zarr",
    )  # fmt: skip
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = predict_mosaic(
            mosaic, model, 12, 2, features=["a", "b"], labels=["s", "d"], chunk_multiplier=1,
            output=tmp_path / "remote.zarr", client=client,
        )  # fmt: skip
        with pytest.raises(RuntimeError, match="model broke"):
            predict_mosaic(
                mosaic, _broken, 12, 2, features=["a", "b"], labels=["s"], chunk_multiplier=1,
                inference_actor="numpy", output=tmp_path / "broken.zarr", client=client,
            )  # fmt: skip
    xr.testing.assert_identical(_open(local).load(), _open(remote).load())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.zarr", "m.zarr", "remote.zarr"]


def _broken(x):
    if float(x[0, 0, 0, 0]) > 0.5:
        raise RuntimeError("model broke")
    return x[:, :1]


def test_torchscript_model_pickles_for_process_workers():
    from tessellum.flow.predict import _prepare_model

    model = _prepare_model(torch.jit.script(_mean3()), "torch", "cpu")
    again = pickle.loads(pickle.dumps(model))
    x = torch.rand(1, 1, 5, 5)
    assert torch.equal(model(x), again(x))


def test_a_failing_model_leaves_nothing_behind(mosaic, tmp_path):
    dest = tmp_path / "fail.zarr"
    predict_mosaic(mosaic, lambda x: x[:, :1], 8, 1, features=["a", "b"], labels=["s"],
                   inference_actor="numpy", output=dest)  # fmt: skip
    before = _open(dest)["s"].values
    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("model broke")
        return x[:, :1] + 1

    with pytest.raises(RuntimeError, match="model broke"):
        predict_mosaic(mosaic, flaky, 8, 1, features=["a", "b"], labels=["s"],
                       inference_actor="numpy", output=dest)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fail.zarr", "m.zarr"]
    np.testing.assert_array_equal(_open(dest)["s"].values, before)


def test_model_output_of_the_wrong_shape(mosaic):
    with pytest.raises(ValidationError, match=r"expected .*labels \['s', 't'\]"):
        predict_mosaic(mosaic, lambda x: x[:, :1], 8, 1, features=["a", "b"],
                       labels=["s", "t"], inference_actor="numpy")  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_size": 4}, "clip_size 4 must be less than half of patch_size 8"),
        ({"patch_size": 0}, "patch_size must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_multiplier": 0}, "chunk_multiplier"),
        ({"output_chunk_size": -1}, "output_chunk_size"),
        ({"merge_mode": "median"}, "merge_mode 'median'"),
        ({"inference_actor": "onnx"}, "inference_actor 'onnx'"),
        ({"features": ["a", "zz"]}, r"features \['zz'\] not in the mosaic"),
        ({"labels": []}, "labels must be a non-empty list"),
        ({"labels": ["s", "s"]}, "duplicate"),
        ({"labels": ["s", "x"]}, r"labels \['x'\] cannot name bands"),
        ({"labels": ["a/b", "d"]}, r"labels \['a/b'\] cannot name bands"),
        ({"extract_labels": ["q"]}, r"extract_labels \['q'\] are not in labels"),
        ({"device": "nodevice"}, "device 'nodevice'"),
        ({"model": "/nonexistent/model.pt"}, "is not a file"),
        ({"model": "m.pt", "inference_actor": "numpy"}, "callable on numpy arrays"),
        ({"client": object()}, "client must be a distributed.Client"),
        ({"zarr_uri": "/nonexistent/x.zarr"}, "does not exist"),
    ],
)
def test_bad_arguments_are_named(mosaic, kwargs, match):
    args = {
        "zarr_uri": mosaic, "model": _weighted_sum_model(), "patch_size": 8, "clip_size": 1,
        "features": ["a", "b"], "labels": ["s", "d"], **kwargs,
    }  # fmt: skip
    with pytest.raises(ValidationError, match=match):
        predict_mosaic(**args)


def test_output_must_not_be_the_input_or_a_users_folder(mosaic, tmp_path):
    kw = {"features": ["a", "b"], "labels": ["s", "d"]}
    with pytest.raises(ValidationError, match="is the input store"):
        predict_mosaic(mosaic, _weighted_sum_model(), 8, 1, output=mosaic, **kw)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValidationError, match="exists and is not a mosaic"):
        predict_mosaic(mosaic, _weighted_sum_model(), 8, 1, output=mine, **kw)
    assert (mine / "notes.txt").read_text() == "keep"


def test_missing_torch_names_the_extra(mosaic, monkeypatch):
    import tessellum._interop as interop

    monkeypatch.setattr(interop, "has", lambda m: m != "torch")  # fault injection
    with pytest.raises(ConfigurationError, match=r"tessellum\[ml\]"):
        predict_mosaic(mosaic, "model.pt", 8, 1, features=["a"], labels=["s"])


def test_integer_band_without_nodata_keeps_its_zeros(tmp_path):
    """Zarr's default fill value of an integer array (0) is not a nodata value."""
    x = np.arange(100, dtype=np.int16).reshape(1, 10, 10) % 3  # a third are 0
    src = make_mosaic(tmp_path / "i.zarr", {"v": x}, chunk=4)
    out = predict_mosaic(
        src, lambda a: a + 1, 4, 1, features=["v"], labels=["t"], inference_actor="numpy"
    )
    np.testing.assert_array_equal(_open(out)["t"].values, x + 1)
