"""``vectorize_mosaic``: threshold mosaic bands and polygonize them (seed 004).

Each feature band of each time slice is thresholded (``value >= threshold`` is
foreground; nodata and NaN never are) and polygonized with ``rasterio.features.shapes``
block by block (blocks of ``chunk_multiplier x chunk_multiplier`` Zarr chunks). A
polygon that does not reach a block seam is final in its task, which writes it as a
GeoParquet part; the pieces that reach a seam go back to the caller, which joins the
pieces connected across seams (sharing an edge; with ``connectivity=8`` also a corner)
into one polygon each. The result is the polygons of ``rasterio.features.shapes`` on
the whole band, made valid (an 8-connected polygon whose ring touches itself becomes a
MultiPolygon of the same area).

Polygonizing happens in pixel coordinates (exact integers, so pieces on both sides of
a seam meet exactly); the mosaic's transform is applied afterwards.

Sync-only CPU work: there is no ``_async`` twin (use ``client=`` to scale out).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._args import int_arg, number_arg
from ..errors import ValidationError
from ..mosaic import _remote
from ..mosaic.zarr_store import mosaic_grid, open_mosaic, publish, remove
from ._common import (
    blocks,
    check_bands,
    check_client,
    chunk_size_of,
    default_output,
    nodata_of,
    output_location,
    read_window,
    require_flow,
    run_tasks,
    staging,
    store_uri,
    valid_mask,
)

__all__ = ["vectorize_mosaic"]

VECTORIZE_METHODS = ("polygonize",)
_CONFIG_KEYS = ("connectivity", "min_area", "simplify")


@dataclass(frozen=True)
class _Params:
    src: str
    dst: str
    threshold: float
    height: int
    width: int
    transform: tuple[float, ...]  # rasterio order a b c d e f
    src_crs: str
    crs: str | None
    connectivity: int
    min_area: float
    simplify: float


def vectorize_mosaic(
    zarr_uri: str | os.PathLike,
    features: Sequence[str],
    threshold: float,
    *,
    vectorize_method: str = "polygonize",
    vectorize_config: dict[str, Any] | None = None,
    chunk_multiplier: int = 4,
    crs: Any = "EPSG:4326",
    output: str | os.PathLike | None = None,
    client: Any = None,
) -> str | None:
    """Polygonize thresholded mosaic bands into a GeoParquet directory.

    Args:
        zarr_uri: the mosaic store (the layout of ``docs/mosaics.md``; a path or URL),
            e.g. the output of :func:`~tessellum.flow.predict_mosaic`, or a one-row
            mosaic index with a ``location`` column.
        features: bands to vectorize, each separately.
        threshold: pixels with ``value >= threshold`` are foreground.
        vectorize_method: "polygonize" (the only method of this version).
        vectorize_config: options of the method: ``connectivity`` (4, the default, or
            8), ``min_area`` (drop polygons smaller than this, in the mosaic CRS's
            units, judged on the pixel polygon), ``simplify`` (a Douglas-Peucker
            tolerance in the mosaic CRS's units, topology preserved).
        chunk_multiplier: a block (one task) is this many Zarr chunks on a side.
        crs: the output geometries' CRS; None keeps the mosaic's.
        output: the output directory (default ``<input stem>_vectors.parquet`` beside
            the input); an earlier output there is replaced, anything else is refused.
            A URL (``s3://bucket/v.parquet``) gets one GeoParquet object instead: the
            tasks write their parts under a temporary prefix, which are joined in
            memory here and written with one PUT (readers see the old object or the
            new one), then deleted.
        client: a ``distributed.Client`` to run the blocks on (default local threads).

    Returns:
        The output directory (GeoParquet parts with columns ``feature``, ``time``,
        ``area`` in the mosaic CRS's units, ``geometry``) or URL (one GeoParquet
        object), or None when no pixel is foreground (then nothing is written).

    Raises:
        ValidationError: a bad argument, named.
    """
    require_flow()
    from ..geo.crs import crs_to_code, to_crs

    uri = store_uri(zarr_uri)
    thr = number_arg(threshold, "threshold")
    if vectorize_method not in VECTORIZE_METHODS:
        raise ValidationError(
            f"vectorize_method {vectorize_method!r} is not one of {list(VECTORIZE_METHODS)}"
        )
    config = _config(vectorize_config)
    mult = int_arg(chunk_multiplier, "chunk_multiplier", 1)
    out_crs = None if crs is None else crs_to_code(to_crs(crs))
    check_client(client)

    ds = open_mosaic(uri)
    feats = check_bands(ds, features, "features", uri)
    grid = mosaic_grid(ds)
    dest = output_location(output, "output") if output is not None else None
    dest = dest or default_output(uri, "_vectors.parquet", "output")
    times = ds["time"].values.astype("datetime64[ns]")

    if isinstance(dest, str):
        _check_vector_object(dest)
        tmp: Any = _remote.temp_url(dest)  # the parts, joined into one object at the end
    else:
        tmp = staging(dest, _is_vector_dir, "a vectorize output")
    try:
        params = _Params(
            src=uri,
            dst=str(tmp),
            threshold=thr,
            height=grid.height,
            width=grid.width,
            transform=tuple(grid.transform)[:6],
            src_crs=grid.crs,
            crs=out_crs,
            **config,
        )
        tasks = []
        for f in feats:
            cy, cx = chunk_size_of(ds[f])
            nod = nodata_of(ds[f])
            for t in range(len(times)):
                for b in blocks(grid.height, grid.width, cy * mult, cx * mult):
                    tasks.append((f, nod, t, times[t], *b))
        results = run_tasks(_vectorize_block, tasks, client, {"p": params})
        _merge_seams(tasks, results, params)
        if isinstance(dest, str):
            return _publish_object(tmp, dest)
        if not any(tmp.iterdir()):
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        publish(tmp, dest)
    except BaseException:
        remove(tmp)
        raise
    return str(dest)


def _config(value: Any) -> dict[str, Any]:
    cfg = dict(value or {}) if isinstance(value, dict | type(None)) else None
    if cfg is None:
        raise ValidationError(f"vectorize_config must be a dict or None, got {value!r}")
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS))
    if unknown:
        raise ValidationError(f"vectorize_config keys {unknown} unknown; use {list(_CONFIG_KEYS)}")
    conn = cfg.get("connectivity", 4)
    if conn not in (4, 8) or isinstance(conn, bool):
        raise ValidationError(f"vectorize_config connectivity must be 4 or 8, got {conn!r}")
    return {
        "connectivity": int(conn),
        "min_area": number_arg(cfg.get("min_area", 0.0), "vectorize_config min_area", 0.0),
        "simplify": number_arg(cfg.get("simplify", 0.0), "vectorize_config simplify", 0.0),
    }


def _is_vector_dir(path: Any) -> bool:
    """A directory of Parquet parts only (what this function writes)."""
    return path.is_dir() and all(
        e.is_file() and e.name.endswith(".parquet") for e in path.iterdir()
    )


_VECTOR_COLUMNS = {"feature", "time", "area", "geometry"}


def _check_vector_object(url: str) -> None:
    """Refuse a URL output that holds anything but an earlier output (one GeoParquet
    object with this function's columns): a prefix of objects, or another file. Only
    the object's footer is read."""
    import io

    import pyarrow.parquet as pq

    from ..store import object_size, open_store, read_range

    if _remote.list_keys(url + "/"):
        raise ValidationError(f"output {url!r} is a prefix holding objects: choose an object URL")
    if not _remote.object_exists(url):
        return
    store, path = open_store(url)
    size = object_size(store, path)
    ok = False
    if size >= 12:
        tail = bytes(read_range(store, path, size - 8, size))
        n = int.from_bytes(tail[:4], "little")
        if tail[4:] == b"PAR1" and 0 < n <= size - 12:
            footer = bytes(read_range(store, path, size - 8 - n, size - 8))
            try:
                names = set(pq.read_schema(io.BytesIO(b"PAR1" + footer + tail)).names)
                ok = names >= _VECTOR_COLUMNS
            except Exception:  # pyarrow's errors for a file that is not Parquet
                ok = False
    if not ok:
        raise ValidationError(
            f"output {url!r} exists and is not a vectorize output: choose another URL or remove it"
        )


def _publish_object(tmp: str, dest: str) -> str | None:
    """Join the GeoParquet parts under the prefix ``tmp`` into one object at ``dest``
    (one PUT), then delete them; None (nothing written) when there is no part."""
    import io

    import geopandas as gpd
    import pandas as pd

    from ..mosaic.zarr_mosaic import write_frame
    from ..store import read_url

    urls = _remote.list_urls(tmp)
    if not urls:
        return None
    frames = [gpd.read_parquet(io.BytesIO(read_url(u))) for u in sorted(urls)]
    joined = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    write_frame(joined, dest)
    _remote.remove_prefix(tmp)
    return dest


def _vectorize_block(task: tuple, *, p: _Params) -> tuple[np.ndarray, np.ndarray]:
    """Polygonize one block; write its final polygons; return the seam pieces
    (pixel-space WKB) and the id of their block."""
    import rasterio.features
    import shapely
    from affine import Affine

    feature, nodata, t, when, r0, r1, c0, c1 = task
    raw = read_window(p.src, feature, t, slice(r0, r1), slice(c0, c1))
    fg = valid_mask(raw, nodata)
    with np.errstate(invalid="ignore"):
        fg &= raw >= p.threshold
    if not fg.any():
        return np.empty(0, object), np.empty(0, np.int64)
    shapes = rasterio.features.shapes(
        fg.view(np.uint8), mask=fg, connectivity=p.connectivity,
        transform=Affine.translation(c0, r0),
    )  # fmt: skip
    geoms = np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object)
    b = shapely.bounds(geoms)
    seam = (
        ((b[:, 0] == c0) & (c0 > 0))
        | ((b[:, 2] == c1) & (c1 < p.width))
        | ((b[:, 1] == r0) & (r0 > 0))
        | ((b[:, 3] == r1) & (r1 < p.height))
    )
    _write_part(geoms[~seam], feature, when, p, f"{t}-{r0}-{c0}")
    return shapely.to_wkb(geoms[seam]), np.full(int(seam.sum()), r0 * p.width + c0, np.int64)


def _merge_seams(tasks: list, results: list, p: _Params) -> None:
    """Join the seam pieces connected across block seams, per feature and time."""
    import shapely

    groups: dict[tuple[str, int], list] = {}
    for task, (wkb, origin) in zip(tasks, results, strict=True):
        if len(wkb):
            g = groups.setdefault((task[0], task[2]), [[], [], task[3]])
            g[0].extend(shapely.from_wkb(wkb))
            g[1].extend(origin)
    for (feature, t), (pieces, origin, when) in groups.items():
        geoms = shapely.make_valid(np.array(pieces, dtype=object))
        block_of = np.asarray(origin, np.int64)
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="intersects")
        pair = (left < right) & (block_of[left] != block_of[right])
        left, right = left[pair], right[pair]
        if p.connectivity == 4:  # a shared edge, not just a corner
            shared = shapely.intersection(geoms[left], geoms[right])
            edge = shapely.length(shared) > 0
            left, right = left[edge], right[edge]
        comps = _components(len(geoms), left.tolist(), right.tolist())
        merged = np.array([_join(geoms[m]) for m in comps], dtype=object)
        _write_part(merged, feature, when, p, f"{t}-seams")


def _join(pieces: np.ndarray) -> Any:
    """One polygon of the pieces of a component (seam vertices on straight edges dropped)."""
    import shapely

    if len(pieces) == 1:
        return pieces[0]
    return shapely.simplify(shapely.union_all(pieces), 0)


def _components(n: int, left: list[int], right: list[int]) -> list[list[int]]:
    """Connected components of ``n`` nodes joined by the edges ``left[i] - right[i]``
    (union-find with path halving)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left, right, strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(root(i), []).append(i)
    return list(comps.values())


def _write_part(geoms: np.ndarray, feature: str, when: Any, p: _Params, name: str) -> None:
    """Finish pixel-space polygons (valid, min_area, to map units, simplify,
    reproject) and write them as one GeoParquet part (nothing when none is left)."""
    if not len(geoms):
        return
    import geopandas as gpd
    import shapely
    from pyproj import Transformer

    from ..geo.crs import to_crs

    a, b, c, d, e, f = p.transform
    geoms = shapely.make_valid(geoms)
    px_area = abs(a * e - b * d)
    if p.min_area > 0:
        geoms = geoms[shapely.area(geoms) * px_area >= p.min_area]
        if not len(geoms):
            return
    geoms = shapely.transform(
        geoms, lambda xy: np.column_stack([a * xy[:, 0] + b * xy[:, 1] + c,
                                           d * xy[:, 0] + e * xy[:, 1] + f])
    )  # fmt: skip
    if p.simplify > 0:
        geoms = shapely.simplify(geoms, p.simplify, preserve_topology=True)
    area = shapely.area(geoms)
    if p.crs is not None and p.crs != p.src_crs:
        # a Transformer of its own: tasks run on threads, and one is not thread-safe
        tr = Transformer.from_crs(to_crs(p.src_crs), to_crs(p.crs), always_xy=True)
        geoms = shapely.transform(
            geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
        )
    gdf = gpd.GeoDataFrame(
        {
            "feature": np.full(len(geoms), feature, dtype=object),
            "time": np.full(len(geoms), when, dtype="datetime64[ns]"),
            "area": area,
        },
        geometry=geoms,
        crs=p.crs or p.src_crs,
    )
    # unique names: band names may hold any character, so they are not part of it
    part = f"part-{name}-{uuid.uuid4().hex[:12]}.parquet"
    if _remote.is_url(p.dst):
        import io

        buf = io.BytesIO()
        gdf.to_parquet(buf, index=False)
        _remote.put_object(_remote.join_url(p.dst, part), buf.getvalue())
        return
    gdf.to_parquet(Path(p.dst) / part, index=False)
