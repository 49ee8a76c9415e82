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
from ..mosaic.zarr_store import MOSAIC_ATTR, temp_path


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

    arr = zarr.open_array(store=uri, path=band, mode="r")
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


def local_output(value: Any, name: str) -> Path:
    """An output location as a local path (remote stores are not written in v1)."""
    if not isinstance(value, str | os.PathLike):
        raise ValidationError(f"{name} must be a local path, got {value!r}")
    text = os.fspath(value)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise ValidationError(f"{name} {value!r}: only local paths can be written in this version")
    if not text.strip():
        raise ValidationError(f"{name} must not be empty")
    return Path(text).absolute()


def default_output(zarr_uri: str, suffix: str, name: str) -> Path:
    """``<stem><suffix>`` beside a local input store (``out.zarr`` -> ``out_predictions.zarr``)."""
    src = local_output(zarr_uri, "zarr_uri") if "://" not in zarr_uri else None
    if src is None:
        raise ValidationError(f"{name} is required when zarr_uri {zarr_uri!r} is not local")
    stem = src.name[: -len(".zarr")] if src.name.endswith(".zarr") else src.name
    return src.with_name(stem + suffix)


def is_mosaic_store(path: Path) -> bool:
    """Whether ``path`` is a Zarr v3 group carrying the mosaic attr (ours to replace)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("node_type") == "group" and MOSAIC_ATTR in meta.get("attributes", {})


def staging(dest: Path, replaceable: Callable[[Path], bool], what: str) -> Path:
    """A fresh temp folder beside ``dest``; refuses when ``dest`` exists and is not
    something this function wrote before (a user's file or folder is never replaced)."""
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
