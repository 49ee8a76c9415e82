"""``predict_mosaic``: patch-based model inference over a whole Zarr mosaic (seed 004).

The mosaic is cut into blocks of ``chunk_multiplier x chunk_multiplier`` output chunks;
each block (one time slice) is a task that reads its window plus a halo of
``clip_size`` pixels, runs the model on overlapping patches and writes its own output
chunks, so memory stays bounded by the block size and tasks never write the same chunk.

Patch placement: the kept centre of a patch is ``stride = patch_size - 2 * clip_size``
pixels wide. Centres tile each block from its top-left corner with that stride; the
last row (column) of centres is moved back so that it ends at the block's edge, and
overlaps the previous one there. ``merge_mode`` decides those overlapping pixels:
``"mean"`` averages the centres covering a pixel, ``"max"`` keeps their maximum,
``"first"`` keeps the first one in row-major patch order. Outside the mosaic the input
is mirrored (numpy's ``reflect``), so edge pixels are predicted from a centre too.

Sync-only CPU work: there is no ``_async`` twin (use ``client=`` to scale out).
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._args import int_arg
from .._interop import require
from ..errors import ValidationError
from ..mosaic._remote import is_url, store_errors
from ..mosaic.zarr_store import MOSAIC_ATTR, mosaic_grid, open_mosaic, publish, remove, zarr_store
from ._common import (
    blocks,
    check_bands,
    check_client,
    chunk_size_of,
    default_output,
    is_mosaic_store,
    nodata_of,
    output_location,
    read_window,
    require_flow,
    run_tasks,
    same_location,
    staging,
    store_uri,
    valid_mask,
)

__all__ = ["predict_mosaic"]

MERGE_MODES = ("mean", "max", "first")
INFERENCE_ACTORS = ("torch", "numpy")


@dataclass(frozen=True)
class _Params:
    src: str
    dst: str
    features: tuple[str, ...]
    nodata: tuple[Any, ...]
    labels: tuple[str, ...]
    keep: tuple[int, ...]  # indices of the stored labels in the model's output
    out_names: tuple[str, ...]
    height: int
    width: int
    patch: int
    clip: int
    batch_size: int
    merge_mode: str
    actor: str
    device: str


def predict_mosaic(
    zarr_uri: str | os.PathLike,
    model: Any,
    patch_size: int,
    clip_size: int,
    *,
    features: Sequence[str],
    labels: Sequence[str],
    device: str = "cpu",
    inference_actor: str = "torch",
    batch_size: int = 16,
    merge_mode: str = "mean",
    extract_labels: Sequence[str] | None = None,
    chunk_multiplier: int = 4,
    output_chunk_size: int | None = None,
    output: str | os.PathLike | None = None,
    client: Any = None,
) -> Any:
    """Run a model over every pixel of a mosaic and write its predictions as a mosaic.

    Args:
        zarr_uri: the input mosaic store (the layout of ``docs/mosaics.md``): a path or
            URL (``s3://``, ``http(s)://``), or a one-row mosaic index with a
            ``location`` column.
        model: with ``inference_actor="torch"``, a ``torch.nn.Module``, a path or URL
            (``s3://``, ``http(s)://``) of a ``torch.export`` program (``.pt2``) or a
            TorchScript file, or a callable on tensors; with ``"numpy"``, a callable
            taking a float32 ``[B, C, H, W]`` array and returning ``[B, L, H, W]``.
        patch_size: the model's input patch size in pixels (square).
        clip_size: pixels dropped from each patch edge before merging
            (``clip_size < patch_size / 2``); give at least the model's receptive-field
            radius and block seams are invisible.
        features: input bands, in the order of the model's input channels.
        labels: names of the model's output channels (the output store's bands).
        device: torch device ("cpu", "cuda", "cuda:1").
        inference_actor: "torch" or "numpy".
        batch_size: patches per model call.
        merge_mode: "mean", "max" or "first": how overlapping patch centres combine.
        extract_labels: the labels to store (default all).
        chunk_multiplier: a block (one task) is this many output chunks on a side.
        output_chunk_size: the output's chunk size (default the input's).
        output: the output store path or URL (``s3://bucket/dir/p.zarr``; default
            ``<input stem>_predictions.zarr`` beside the input); an earlier mosaic there
            is replaced, anything else is refused. At a URL the store is written under a
            temporary prefix and copied into place: a reader sees the old store, no
            store or the whole new one, and a failure leaves no store there.
        client: a ``distributed.Client`` to run the blocks on (default local threads).

    Returns:
        The output store's path — or, when ``zarr_uri`` is a mosaic index (the
        GeoDataFrame ``build_mosaic`` returns), that index with ``location`` pointing at
        the predictions, as seed 004 chains them. Its bands are float32, NaN where any input feature is
        nodata, with the input's time, x/y and ``spatial_ref`` coordinates.

    Raises:
        ValidationError: a bad argument (named), or model output of the wrong shape.
        ConfigurationError: torch or the flow extra is not installed.
    """
    require_flow()
    uri = store_uri(zarr_uri)
    patch = int_arg(patch_size, "patch_size", 1)
    clip = int_arg(clip_size, "clip_size", 0)
    if 2 * clip >= patch:
        raise ValidationError(
            f"clip_size {clip_size!r} must be less than half of patch_size {patch_size!r}"
        )
    batch = int_arg(batch_size, "batch_size", 1)
    mult = int_arg(chunk_multiplier, "chunk_multiplier", 1)
    if output_chunk_size is not None:
        int_arg(output_chunk_size, "output_chunk_size", 1)
    if merge_mode not in MERGE_MODES:
        raise ValidationError(f"merge_mode {merge_mode!r} is not one of {list(MERGE_MODES)}")
    if inference_actor not in INFERENCE_ACTORS:
        raise ValidationError(
            f"inference_actor {inference_actor!r} is not one of {list(INFERENCE_ACTORS)}"
        )
    label_list = _names(labels, "labels")
    keep_names = label_list if extract_labels is None else _names(extract_labels, "extract_labels")
    unknown = [n for n in keep_names if n not in label_list]
    if unknown:
        raise ValidationError(f"extract_labels {unknown} are not in labels {label_list}")
    check_client(client)
    model_obj = _prepare_model(model, inference_actor, device)

    ds = open_mosaic(uri)
    feats = check_bands(ds, features, "features", uri)
    grid = mosaic_grid(ds)
    in_chunk = chunk_size_of(ds[feats[0]])
    cy, cx = (output_chunk_size, output_chunk_size) if output_chunk_size else in_chunk
    dest = output_location(output, "output") if output is not None else None
    dest = dest or default_output(uri, "_predictions.zarr", "output")
    if same_location(uri, dest):
        raise ValidationError(f"output {str(dest)!r} is the input store")

    params = _Params(
        src=uri,
        dst="",
        features=tuple(feats),
        nodata=tuple(nodata_of(ds[f]) for f in feats),
        labels=tuple(label_list),
        keep=tuple(label_list.index(n) for n in keep_names),
        out_names=tuple(keep_names),
        height=grid.height,
        width=grid.width,
        patch=patch,
        clip=clip,
        batch_size=batch,
        merge_mode=merge_mode,
        actor=inference_actor,
        device=device,
    )
    tmp = staging(dest, is_mosaic_store, "a mosaic")
    try:
        _write_template(ds, tmp, keep_names, (cy, cx), uri)
        params = dataclasses.replace(params, dst=str(tmp))
        tasks = [
            (t, *b)
            for t in range(int(ds.sizes["time"]))
            for b in blocks(grid.height, grid.width, cy * mult, cx * mult)
        ]
        run_tasks(_predict_block, tasks, client, {"model": model_obj, "p": params})
        publish(tmp, dest)
    except BaseException:
        remove(tmp)
        raise
    if hasattr(zarr_uri, "columns"):  # an index in, an index out (seed 004's chaining)
        index = zarr_uri.copy()
        index["location"] = [str(dest)]
        return index
    return str(dest)


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise ValidationError(f"{what} must be a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise ValidationError(f"{what} {list(value)!r} has duplicate names")
    # they name the output's variables: not a path, not one of its coordinates
    bad = [v for v in value if "/" in v or v in ("time", "y", "x", "spatial_ref")]
    if bad:
        raise ValidationError(f"{what} {bad} cannot name bands (a '/' or a coordinate name)")
    return list(value)


# -- the model --------------------------------------------------------------------------


class _Scripted:
    """A TorchScript module that pickles as its serialized bytes (ScriptModules do not
    pickle; a process-based Dask cluster needs to send it to its workers)."""

    def __init__(self, module: Any, device: str) -> None:
        self.module = module
        self.device = device

    def __call__(self, x: Any) -> Any:
        return self.module(x)

    def __reduce__(self) -> tuple[Any, tuple[bytes, str]]:
        import torch

        buf = io.BytesIO()
        with warnings.catch_warnings():  # as in _load_model_file
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(self.module, buf)
        return _load_scripted, (buf.getvalue(), self.device)


def _load_scripted(data: bytes, device: str) -> _Scripted:
    import torch

    with warnings.catch_warnings():  # as in _load_model_file
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(io.BytesIO(data), map_location=device)
    return _Scripted(module.eval(), device)


def _load_model_file(path: str, dev: Any) -> Any:
    """A model file (local, or a URL read whole through :mod:`tessellum.store`): a
    ``torch.export`` program (``.pt2``) or a TorchScript file."""
    import torch

    from ..store import read_url

    if is_url(path):
        source: Any = io.BytesIO(read_url(path))
    elif not Path(path).is_file():
        raise ValidationError(f"model {path!r} is not a file")
    else:
        source = path
    try:
        if path.split("?")[0].endswith(".pt2"):
            return torch.export.load(source).module().to(dev)
        with warnings.catch_warnings():
            # TorchScript is deprecated in torch 2.13, yet .pt TorchScript files are how
            # most trained models still ship: reading one is not the caller's mistake
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(source, map_location=dev)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ValidationError(
            f"model {path!r} is neither a torch.export program (.pt2) nor TorchScript: {exc}"
        ) from None


def _prepare_model(model: Any, actor: str, device: str) -> Any:
    """The model ready to call: loaded, on its device, in eval mode."""
    if actor == "numpy":
        if isinstance(model, str | os.PathLike) or not callable(model):
            raise ValidationError(
                f"model must be a callable on numpy arrays for inference_actor='numpy', "
                f"got {model!r}"
            )
        return model
    require("torch", "ml")
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValidationError(f"device {device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError(f"device {device!r}: CUDA is not available on this machine")
    if isinstance(model, str | os.PathLike):
        model = _load_model_file(os.fspath(model), dev)
    if not callable(model):
        raise ValidationError(f"model must be a torch.nn.Module, a path or a callable: {model!r}")
    if isinstance(model, torch.nn.Module):
        model = model.to(dev)
        try:
            model = model.eval()
        except NotImplementedError:  # a torch.export module: exported in its mode already
            pass
    if isinstance(model, torch.jit.ScriptModule):
        model = _Scripted(model, str(dev))
    return model


def _infer(model: Any, x: np.ndarray, p: _Params) -> np.ndarray:
    if p.actor == "numpy":
        y = np.asarray(model(x))
    else:
        import torch

        with torch.inference_mode():
            out = model(torch.from_numpy(x).to(p.device))
        if not isinstance(out, torch.Tensor):
            raise ValidationError(f"the model returned {type(out).__name__}, not a tensor")
        y = out.detach().to("cpu").float().numpy()
    want = (x.shape[0], len(p.labels), x.shape[2], x.shape[3])
    if y.shape != want:
        raise ValidationError(
            f"the model returned shape {tuple(y.shape)} for input {tuple(x.shape)}; "
            f"expected {want} ([B, len(labels), H, W] with labels {list(p.labels)})"
        )
    return y


# -- blocks -----------------------------------------------------------------------------


def _starts(lo: int, hi: int, stride: int) -> list[int]:
    """Centre starts tiling [lo, hi): every ``stride``, the last one ending at ``hi``."""
    return [*range(lo, hi - stride, stride), max(lo, hi - stride)]


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored into [0, n) as numpy's ``reflect`` pad does (edge not repeated)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


def _read_input(p: _Params, t: int, ra: int, rb: int, ca: int, cb: int):
    """Features over rows [ra, rb) x cols [ca, cb) (mirrored outside the mosaic) as
    float32 with nodata set to 0, and where every feature holds data."""
    ridx = _reflect(np.arange(ra, rb), p.height)
    cidx = _reflect(np.arange(ca, cb), p.width)
    r_lo, r_hi = int(ridx.min()), int(ridx.max()) + 1
    c_lo, c_hi = int(cidx.min()), int(cidx.max()) + 1
    x = np.empty((len(p.features), rb - ra, cb - ca), np.float32)
    valid = np.ones((rb - ra, cb - ca), bool)
    sel = np.ix_(ridx - r_lo, cidx - c_lo)
    for i, (band, nod) in enumerate(zip(p.features, p.nodata, strict=True)):
        raw = read_window(p.src, band, t, slice(r_lo, r_hi), slice(c_lo, c_hi))[sel]
        ok = valid_mask(raw, nod)
        x[i] = np.where(ok, raw, 0)
        valid &= ok
    return x, valid


def _predict_block(task: tuple[int, int, int, int, int], *, model: Any, p: _Params) -> None:
    """Predict rows [r0, r1) x cols [c0, c1) of time slice ``t`` and write them."""
    import zarr

    t, r0, r1, c0, c1 = task
    s = p.patch - 2 * p.clip
    rs, cs = _starts(r0, r1, s), _starts(c0, c1, s)
    ra, ca = r0 - p.clip, c0 - p.clip
    x, valid = _read_input(p, t, ra, rs[-1] + s + p.clip, ca, cs[-1] + s + p.clip)
    h, w = r1 - r0, c1 - c0
    n_out = len(p.keep)
    if p.merge_mode == "max":
        acc = np.full((n_out, h, w), -np.inf, np.float64)
    else:
        acc = np.zeros((n_out, h, w), np.float64)
    count = np.zeros((h, w), np.int32)
    keep = list(p.keep)
    origins = [(r, c) for r in rs for c in cs]  # row-major: "first" follows this order
    for b0 in range(0, len(origins), p.batch_size):
        batch = origins[b0 : b0 + p.batch_size]
        # patch (r, c) reads rows [r - clip, r - clip + patch): x's row r - r0
        xs = np.stack(
            [x[:, r - r0 : r - r0 + p.patch, c - c0 : c - c0 + p.patch] for r, c in batch]
        )
        y = _infer(model, xs, p)
        for (r, c), yy in zip(batch, y, strict=True):
            # the centre, cut to the block (a centre may pass the block's end)
            hh, ww = min(s, r1 - r), min(s, c1 - c)
            centre = yy[keep, p.clip : p.clip + hh, p.clip : p.clip + ww]
            win = (slice(None), slice(r - r0, r - r0 + hh), slice(c - c0, c - c0 + ww))
            if p.merge_mode == "mean":
                acc[win] += centre
            elif p.merge_mode == "max":
                acc[win] = np.maximum(acc[win], centre)
            else:
                fresh = count[win[1:]] == 0
                acc[win] = np.where(fresh, centre, acc[win])
            count[win[1:]] += 1
    if p.merge_mode == "mean":
        acc /= count
    out = acc.astype(np.float32)
    out[:, ~valid[r0 - ra : r1 - ra, c0 - ca : c1 - ca]] = np.nan
    with store_errors(p.dst, "writing the store"):
        group = zarr.open_group(zarr_store(p.dst), mode="r+")
        for k, name in enumerate(p.out_names):
            group[name][t, r0:r1, c0:c1] = out[k]


# -- the output store -------------------------------------------------------------------


def _write_template(
    ds: Any, path: Any, names: Sequence[str], chunks: tuple[int, int], src: str
) -> None:
    """Write the output's metadata and coordinates (no chunks: tasks fill them)."""
    import dask.array as da
    import xarray as xr

    shape = (ds.sizes["time"], ds.sizes["y"], ds.sizes["x"])
    # fresh variables: the input's encodings (chunks, compressors) are not the output's
    coords = {
        k: xr.DataArray(ds.coords[k].values, dims=ds.coords[k].dims, attrs=ds.coords[k].attrs)
        for k in ("time", "y", "x", "spatial_ref")
        if k in ds.coords
    }
    data = {}
    for name in names:
        arr = da.full(shape, np.nan, dtype=np.float32, chunks=(1, *chunks))
        data[name] = xr.DataArray(
            arr, dims=("time", "y", "x"), attrs={"grid_mapping": "spatial_ref", "nodata": np.nan}
        )
    attrs = {
        "crs": ds.attrs["crs"],
        "transform": list(ds.attrs["transform"]),
        MOSAIC_ATTR: 1,
        "source": src,
    }
    out = xr.Dataset(data, coords=coords, attrs=attrs)
    encoding = {n: {"_FillValue": np.nan, "chunks": (1, *chunks)} for n in names}
    for k in ("y", "x", "time"):
        if k in out.coords:
            encoding[k] = {"chunks": (out.sizes[k],)}
    with warnings.catch_warnings():
        # consolidated metadata is what lets xarray.open_zarr open without a warning
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        out.to_zarr(zarr_store(path), mode="w", zarr_format=3, compute=False, consolidated=True)
