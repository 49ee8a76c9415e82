"""``tessellum extract-raster``: one dataset over a bbox -> a Cloud-Optimized GeoTIFF."""

from __future__ import annotations

import json
from typing import Annotated

import typer

__all__ = ["extract_raster"]


def extract_raster(
    dataset: Annotated[str, typer.Argument(help="Dataset id, e.g. copernicus_dem:elevation.")],
    bbox: Annotated[
        tuple[float, float, float, float],
        typer.Option(
            help="W S E N in degrees (EPSG:4326). Negative values work: --bbox -112.05 41.95 "
            "-111.95 42.05.",
            metavar="W S E N",
        ),
    ],
    out: Annotated[  # str: typer's Path turns "s3://b/x" into the local folder "s3:/b/x"
        str, typer.Option(help="Output folder (created when missing; local, not a URL).")
    ],
    target_resolution: Annotated[
        float | None,
        typer.Option(help="Pixel size in output CRS units (default: the native grid)."),
    ] = None,
    resampling: Annotated[
        str, typer.Option(help="nearest, bilinear, cubic, average, mode, ...")
    ] = "nearest",
    target_crs: Annotated[
        str | None, typer.Option(help="Output CRS, e.g. EPSG:4326 (default: native).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="Time range start (ISO date).")] = None,
    end: Annotated[str | None, typer.Option(help="Time range end (ISO date, inclusive).")] = None,
    filename: Annotated[
        str | None, typer.Option(help="File name (default {provider}_{variable}.tif).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress.")
    ] = True,
) -> None:
    """Extract DATASET over a bbox as a GeoTIFF (COG) on the source pixel grid."""
    from rich.console import Console

    from ..errors import TessellumError
    from ..mosaic import extract_raster_sync

    err = Console(stderr=True)
    time_range = (start, end) if start or end else None
    show = progress and err.is_terminal and not as_json
    try:
        with (
            err.status(f"extracting {dataset} over {bbox} ...", spinner="dots") if show else _null()
        ):
            result = extract_raster_sync(
                dataset,
                bbox,
                out,
                target_resolution=target_resolution,
                resampling=resampling,
                time_range=time_range,
                filename=filename,
                target_crs=target_crs,
                progress=show,
            )
    except (TessellumError, ValueError) as exc:
        # plain text on one line: rich would wrap it at 80 columns and read "[...]" in
        # a dataset id or path as markup, dropping it from the message
        message = " ".join(str(exc).split())
        typer.echo(f"error: {type(exc).__name__}: {message}", err=True)
        raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print(result)


def _null():
    import contextlib

    return contextlib.nullcontext()


def _print(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, title=f"[bold]{result.dataset_id}[/bold]")
    rows = {
        "path": str(result.path),
        "shape": f"{result.shape[0]} x {result.shape[1]} ({result.dtype})",
        "crs": result.crs if len(result.crs) < 60 else result.crs[:57] + "...",
        "bounds": ", ".join(f"{v:.6f}" for v in result.bounds),
        "resolution": ", ".join(f"{v:.8g}" for v in result.resolution),
        "nodata": str(result.nodata),
        "units": result.units,
        "license": result.license,
        "provenance": result.provenance,
        "elapsed": f"{result.elapsed_ms:.0f} ms",
    }
    for note in result.notes:
        rows.setdefault("notes", note)
    for key, value in rows.items():
        table.add_row(key, value)
    Console().print(table)
