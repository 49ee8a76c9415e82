"""Model recipes: seed 004's ``build_and_predict_mosaic_recipe`` and ``ModelRecipes``.

A recipe names the catalog dataset (and band) it mosaics, the model that runs over the
mosaic, its patch and clip sizes, its output labels, the mosaic's default CRS and the
resampling used to build it. No model weights can be shipped or downloaded here, so the
recipes' models are small deterministic numpy functions (``inference_actor="numpy"``).

* ``ModelRecipes.SLOPE``: ``copernicus_dem:elevation`` -> ``slope`` in degrees. Slope
  needs metres on both axes, and a patch carries no coordinates from which a model could
  learn each row's latitude, so the DEM is mosaicked in a *projected* CRS: by default
  the UTM zone of the AOI's centroid (bilinear resampling). A geographic ``crs`` is
  refused; a projected one in feet is converted with its axis unit. Slope is measured
  on the projection's plane, as ``gdaldem slope`` does on a projected DEM.
* ``ModelRecipes.WATER_MASK``: ``esa_worldcover:land_cover`` -> ``water`` = 1.0 where
  the class is 80 ("Permanent water bodies"), 0.0 elsewhere, NaN where nodata; mosaicked
  in the dataset's native CRS by default (nearest: classes are never interpolated).

``build_and_predict_mosaic_recipe`` runs :func:`tessellum.mosaic.build_mosaic` then
:func:`tessellum.flow.predict_mosaic`; its ``_async`` twin awaits the build and runs the
(sync-only, CPU) prediction in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .._sync import run_sync, same_signature
from ..errors import ValidationError

__all__ = [
    "ModelRecipes",
    "Recipe",
    "build_and_predict_mosaic_recipe",
    "build_and_predict_mosaic_recipe_async",
]


# -- the models ------------------------------------------------------------------------


@dataclass(frozen=True)
class SlopeModel:
    """Slope in degrees of a DEM patch ``[B, 1, H, W]`` (heights in metres) whose pixels
    are ``dx`` x ``dy`` metres: ``degrees(arctan(hypot(dz/dx, dz/dy)))`` with the
    derivatives of :func:`numpy.gradient` (central differences). Patch-edge pixels use
    one-sided differences, so the recipe clips 1 pixel (the 3x3 stencil's halo).

    A dataclass rather than a closure so that it pickles to Dask workers."""

    dx: float
    dy: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x[:, :1].astype(np.float64)
        if z.shape[-2] < 2 or z.shape[-1] < 2:
            raise ValidationError(f"a slope patch needs at least 2 x 2 pixels, got {z.shape}")
        gy, gx = np.gradient(z, self.dy, self.dx, axis=(-2, -1))
        return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)


def water_mask(x: np.ndarray) -> np.ndarray:
    """1.0 where the WorldCover class is 80 (permanent water bodies), else 0.0
    (``predict_mosaic`` turns nodata pixels into NaN)."""
    return (x[:, :1] == 80).astype(np.float32)


# -- the recipes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What a :class:`ModelRecipes` member runs.

    Attributes:
        dataset: the catalog dataset id mosaicked (``provider:variable``).
        band: the mosaic's band name (the model's one input feature).
        labels: the model's output band names.
        patch_size, clip_size: ``predict_mosaic``'s patch and clip sizes.
        resampling: the warp kernel used to build the mosaic.
        crs: the mosaic's default CRS: ``"utm"`` (the AOI centroid's UTM zone) or None
            (the dataset's native CRS).
        metric: the model needs a projected CRS (its pixel size in metres).
        make_model: the model callable for a mosaic whose pixels are ``(dx, dy)``
            metres (``crs`` units for a recipe that is not ``metric``).
        description: one line for docs.
    """

    dataset: str
    band: str
    labels: tuple[str, ...]
    patch_size: int
    clip_size: int
    resampling: str
    crs: str | None
    metric: bool
    make_model: Callable[[float, float], Callable[[np.ndarray], np.ndarray]]
    description: str


class ModelRecipes(StrEnum):
    """Seed 004's pre-configured recipes (see :data:`RECIPES` for what each runs)."""

    SLOPE = "slope"
    WATER_MASK = "water_mask"

    @property
    def recipe(self) -> Recipe:
        """The recipe's datasets, model and parameters."""
        return RECIPES[self]


RECIPES: dict[ModelRecipes, Recipe] = {
    ModelRecipes.SLOPE: Recipe(
        dataset="copernicus_dem:elevation",
        band="elevation",
        labels=("slope",),
        patch_size=256,
        clip_size=1,
        resampling="bilinear",
        crs="utm",
        metric=True,
        make_model=SlopeModel,
        description="slope in degrees of the Copernicus DEM GLO-30",
    ),
    ModelRecipes.WATER_MASK: Recipe(
        dataset="esa_worldcover:land_cover",
        band="land_cover",
        labels=("water",),
        patch_size=256,
        clip_size=0,
        resampling="nearest",
        crs=None,
        metric=False,
        make_model=lambda dx, dy: water_mask,
        description="1 where ESA WorldCover is class 80 (permanent water), else 0",
    ),
}


def _recipe(value: Any) -> ModelRecipes:
    names = [m.value for m in ModelRecipes]
    if isinstance(value, str):  # a member is a str too
        try:
            return ModelRecipes(value)
        except ValueError:
            pass
    raise ValidationError(f"model_recipe {value!r} is not one of the ModelRecipes {names}")


def _utm_of(aoi: Any) -> str:
    """The UTM zone (EPSG:326xx north, 327xx south) of the AOI's centroid."""
    import shapely

    from ..geo.crs import transformer
    from ..mosaic.zarr_mosaic import _aoi_geometries

    geoms = _aoi_geometries(aoi)
    if not len(geoms):
        raise ValidationError("aoi holds no geometry")
    c = shapely.union_all(geoms.geoms).centroid
    lon, lat = transformer(geoms.crs, "EPSG:4326").transform(c.x, c.y)
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _metres_per_unit(crs: Any) -> float:
    """Metres per unit of a projected ``crs``'s x axis; a geographic one is refused."""
    from ..geo.crs import to_crs

    c = to_crs(crs)
    if not c.is_projected:
        raise ValidationError(
            f"crs {crs!r} is not projected: the slope recipe needs metres on both axes "
            "(pass a UTM EPSG code, or None for the AOI's UTM zone)"
        )
    return float(c.axis_info[0].unit_conversion_factor)


async def build_and_predict_mosaic_recipe_async(
    aoi: Any,
    start_date: Any = None,
    end_date: Any = None,
    model_recipe: ModelRecipes | str | None = None,
    crs: Any = None,
    *,
    output_dir: str | os.PathLike,
    resolution: float | tuple[float, float] | None = None,
    chunk_size: int = 512,
    client: Any = None,
    progress: bool | None = None,
) -> Any:
    """Async form of :func:`build_and_predict_mosaic_recipe`."""
    from ..mosaic._remote import is_url, join_url, local_path, writable
    from ..mosaic.zarr_mosaic import build_mosaic_async, write_frame
    from ..mosaic.zarr_store import mosaic_grid, open_mosaic
    from .predict import predict_mosaic

    member = _recipe(model_recipe)
    rec = member.recipe
    if output_dir is None or not isinstance(output_dir, str | os.PathLike):
        raise ValidationError(f"output_dir must be a folder path or URL, got {output_dir!r}")
    if is_url(os.fspath(output_dir)):
        base = writable(os.fspath(output_dir), "output_dir")

        def place(name: str) -> Any:
            return join_url(base, name)
    else:

        def place(name: str) -> Any:
            return Path(local_path(output_dir)) / name

    if crs is None and rec.crs == "utm":
        crs = _utm_of(aoi)
    unit = _metres_per_unit(crs) if rec.metric else 1.0
    index = await build_mosaic_async(
        rec.dataset, aoi, start_date, end_date, bands=[rec.band], output_dir=output_dir,
        crs=crs, resolution=resolution, chunk_size=chunk_size, resampling=rec.resampling,
        client=client, progress=progress, name=f"{member.value}_mosaic",
    )  # fmt: skip
    mosaic = index.location[0]
    xres, yres = mosaic_grid(open_mosaic(mosaic)).resolution
    model = rec.make_model(abs(xres) * unit, abs(yres) * unit)
    out = place(f"{member.value}.zarr")
    pred = await asyncio.to_thread(
        predict_mosaic, index, model, rec.patch_size, rec.clip_size,
        features=[rec.band], labels=list(rec.labels), inference_actor="numpy",
        output=out, client=client,
    )  # fmt: skip
    pred["mosaic_location"] = [str(mosaic)]
    pred["model_recipe"] = [member.value]
    write_frame(pred, place(f"{member.value}.parquet"))
    return pred


@same_signature(build_and_predict_mosaic_recipe_async)
def build_and_predict_mosaic_recipe(aoi: Any, *args: Any, **kwargs: Any) -> Any:
    """Build a mosaic and run a recipe's model over it (seed 004's
    ``build_and_predict_mosaic_recipe``).

    Args:
        aoi: the area of interest: anything :func:`tessellum.mosaic.build_mosaic` takes
            (shapely, GeoJSON, GeoDataFrame, lon/lat bbox, or a path GeoPandas reads).
        start_date, end_date: the records' inclusive date range (either open).
        model_recipe: a :class:`ModelRecipes` member or its value (``"slope"``,
            ``"water_mask"``).
        crs: the mosaic's CRS. None: the recipe's default — the AOI centroid's UTM zone
            for ``SLOPE`` (which refuses a geographic CRS), the dataset's native CRS for
            ``WATER_MASK``.
        output_dir: folder path or URL (``s3://bucket/dir``) for
            ``<recipe>_mosaic.zarr`` (+ ``.parquet``, the mosaic's index),
            ``<recipe>.zarr`` (the predictions) and ``<recipe>.parquet`` (the returned
            table as GeoParquet); earlier ones are replaced atomically.
        resolution: the mosaic's pixel size in ``crs`` units (default: native).
        chunk_size: the mosaic's chunk side in pixels.
        client: a ``distributed.Client`` running the build's shards and the model's blocks.
        progress: a progress bar over the build's shards (None: on a TTY).

    Returns:
        A one-row GeoDataFrame (the mosaic's footprint in EPSG:4326) with ``location``
        pointing at the predictions store (float32 bands named by the recipe's labels,
        NaN where the input is nodata), plus ``mosaic_location`` (the input mosaic) and
        ``model_recipe``.

    Raises:
        ValidationError: an unknown ``model_recipe`` (the recipes are listed), a
            geographic ``crs`` for ``SLOPE``, or any bad argument of the building blocks.
    """
    return run_sync(build_and_predict_mosaic_recipe_async(aoi, *args, **kwargs))
