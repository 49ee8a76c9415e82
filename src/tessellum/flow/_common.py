"""Shared pieces of the flow functions: the mosaic store layout (read side), block
windows, argument checks, atomic output folders and the runtime (local threads, or the
tasks of a ``distributed.Client``).

The mosaic layout is :mod:`tessellum.mosaic.zarr_store`'s (``docs/mosaics.md``): a Zarr
v3 group that ``xarray.open_zarr`` opens, one ``(time, y, x)`` variable per band,
Dataset attrs ``crs``, ``transform`` (rasterio order) and ``tessellum_mosaic = 1``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._interop import require
from ..errors import ValidationError
from ..mosaic import _remote
from ..mosaic.zarr_store import MOSAIC_ATTR, temp_path, zarr_store


def require_flow() -> None:
    """The flow extra's modules, or a clear error naming the extra."""
    for module in ("xarray", "zarr", "dask", "geopandas"):
        require(module, "flow")


def store_uri(zarr_uri: Any) -> str:
    """The store path of ``zarr_uri``: a path or URL, or a mosaic index (the
    GeoDataFrame ``build_mosaic`` returns) of one row, whose ``location`` it names."""
    if hasattr(zarr_uri, "columns"):
        if "location" not in zarr_uri.columns or len(zarr_uri) != 1:
            raise ValidationError(
                "zarr_uri as a mosaic index must be one row with a 'location' column, got "
                f"{len(zarr_uri)} row(s) and columns {list(zarr_uri.columns)}"
            )
        zarr_uri = zarr_uri["location"].iloc[0]
    uri = os.fspath(zarr_uri) if isinstance(zarr_uri, os.PathLike) else zarr_uri
    if not isinstance(uri, str):
        raise ValidationError(f"zarr_uri must be a store path or URL, got {zarr_uri!r}")
    return uri


def check_bands(ds: Any, names: Any, what: str, uri: Any) -> list[str]:
    """``names`` as a non-empty list of band names, each a ``(time, y, x)`` variable."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names):
        raise ValidationError(f"{what} must be a non-empty list of band names, got {names!r}")
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise ValidationError(
            f"{what} {missing} not in the mosaic {uri!r} (bands: {sorted(map(str, ds.data_vars))})"
        )
    bad = [n for n in names if ds[n].dims != ("time", "y", "x")]
    if bad:
        raise ValidationError(f"{what} {bad} do not have dims (time, y, x)")
    return list(names)


def nodata_of(var: Any) -> float | int | None:
    """The band's nodata value: its ``_FillValue`` encoding, else its ``nodata`` attr."""
    for v in (var.encoding.get("_FillValue"), var.attrs.get("nodata")):
        if v is not None:
            return v.item() if hasattr(v, "item") else v
    return None


def valid_mask(arr: np.ndarray, nodata: Any) -> np.ndarray:
    """True where ``arr`` holds data (not ``nodata``, not NaN)."""
    valid = np.ones(arr.shape, bool)
    if arr.dtype.kind == "f":
        valid &= ~np.isnan(arr)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= arr != nodata
    return valid


def read_window(uri: str, band: str, t: int, rows: slice, cols: slice) -> np.ndarray:
    """Raw values of one band's window (no decoding: nodata stays the fill value)."""
    import zarr

    with _remote.store_errors(uri, "reading the store"):
        arr = zarr.open_array(store=zarr_store(uri, read_only=True), path=band, mode="r")
        return np.asarray(arr[t, rows, cols])


def chunk_size_of(var: Any) -> tuple[int, int]:
    """The (y, x) Zarr chunk size of a band (its whole size when unchunked)."""
    chunks = var.encoding.get("chunks") or var.shape
    return int(chunks[-2]), int(chunks[-1])


def blocks(height: int, width: int, by: int, bx: int) -> Iterator[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) of the blocks tiling a ``height x width`` array."""
    for r0 in range(0, height, by):
        for c0 in range(0, width, bx):
            yield r0, min(r0 + by, height), c0, min(c0 + bx, width)


def output_location(value: Any, name: str) -> Path | str:
    """An output location: an absolute local path, or a writable URL (``s3://``...)."""
    if not isinstance(value, str | os.PathLike):
        raise ValidationError(f"{name} must be a path or URL, got {value!r}")
    text = os.fspath(value)
    if _remote.is_url(text):
        return _remote.writable(text, name)
    text = _remote.local_path(text)
    if not text.strip():
        raise ValidationError(f"{name} must not be empty")
    return Path(text).absolute()


def default_output(zarr_uri: str, suffix: str, name: str) -> Path | str:
    """``<stem><suffix>`` beside the input store (``out.zarr`` -> ``out_predictions.zarr``;
    a URL input gets a URL beside it)."""
    if _remote.is_url(zarr_uri):
        parent, base = _remote.split_url(zarr_uri)
        stem = base[: -len(".zarr")] if base.endswith(".zarr") else base
        return output_location(_remote.join_url(parent, stem + suffix), name)
    src = Path(_remote.local_path(zarr_uri)).absolute()
    stem = src.name[: -len(".zarr")] if src.name.endswith(".zarr") else src.name
    return src.with_name(stem + suffix)


def same_location(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two store locations (paths or URLs) name the same store."""
    sa, sb = os.fspath(a), os.fspath(b)
    if _remote.is_url(sa) or _remote.is_url(sb):
        return sa.rstrip("/") == sb.rstrip("/")
    return Path(_remote.local_path(sa)).resolve() == Path(_remote.local_path(sb)).resolve()


def is_mosaic_store(path: Path | str) -> bool:
    """Whether ``path`` is a Zarr v3 group carrying the mosaic attr (ours to replace)."""
    if isinstance(path, str) and _remote.is_url(path):
        attrs = _remote.root_attrs(path)
        return attrs is not None and MOSAIC_ATTR in attrs
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("node_type") == "group" and MOSAIC_ATTR in meta.get("attributes", {})


def staging(dest: Path | str, replaceable: Callable[[Any], bool], what: str) -> Path | str:
    """A fresh temp folder beside ``dest``; refuses when ``dest`` exists and is not
    something this function wrote before (a user's file or folder is never replaced).
    For a URL: a temp prefix in the same bucket (nothing is created; the bucket is
    checked first, so a missing one or a 403 fails here with a tessellum error)."""
    if isinstance(dest, str):
        if _remote.list_keys(dest) and not replaceable(dest):
            raise ValidationError(
                f"output {dest!r} holds objects that are not {what}: choose another "
                "prefix or remove them"
            )
        return temp_path(dest)
    if dest.exists() and not replaceable(dest):
        raise ValidationError(
            f"output {str(dest)!r} exists and is not {what}: choose another path or remove it"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    tmp.mkdir()
    return tmp


def check_client(client: Any) -> None:
    if client is not None and not (hasattr(client, "map") and hasattr(client, "gather")):
        raise ValidationError(f"client must be a distributed.Client or None, got {client!r}")


def run_tasks(
    fn: Callable[..., Any], items: Sequence[Any], client: Any, shared: dict[str, Any]
) -> list[Any]:
    """``fn(item, **shared)`` for every item: on local threads, or as tasks of
    ``client`` (``shared`` is scattered to the workers once, not sent per task)."""
    if not items:
        return []
    if client is not None:
        scattered = {k: client.scatter(v, broadcast=True) for k, v in shared.items()}
        futures = client.map(fn, list(items), pure=False, **scattered)
        from distributed import wait

        # every task ends (done or failed) before an error is raised: none may still be
        # writing into the staging folder when the caller removes it
        wait(futures)
        return client.gather(futures)
    workers = max(1, min(len(items), os.cpu_count() or 2))
    with ThreadPoolExecutor(workers, thread_name_prefix="tessellum-flow") as pool:
        futures = [pool.submit(fn, item, **shared) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
