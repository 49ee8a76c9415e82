"""The workflow layer of seed 004: model inference over Zarr mosaics and vectorizing
its predictions (see ``docs/flow.md``).

    >>> from tessellum.flow import predict_mosaic, vectorize_mosaic

Both are sync-only CPU work, run on local threads by default or on a Dask cluster with
``client=``. ``build_and_predict_mosaic_recipe`` (with an ``_async`` twin) chains
``build_mosaic`` and ``predict_mosaic`` for a :class:`ModelRecipes` member. Heavy modules (xarray, zarr, dask, torch, geopandas) load on first use.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

__all__ = [
    "ModelRecipes",
    "build_and_predict_mosaic_recipe",
    "build_and_predict_mosaic_recipe_async",
    "predict_mosaic",
    "vectorize_mosaic",
]

_LAZY = {
    "predict_mosaic": ".predict",
    "vectorize_mosaic": ".vectorize",
    **dict.fromkeys(
        [
            "ModelRecipes",
            "build_and_predict_mosaic_recipe",
            "build_and_predict_mosaic_recipe_async",
        ],
        ".recipes",
    ),
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
