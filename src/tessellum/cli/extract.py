"""``tessellum extract``: zonal statistics of a vector file -> Parquet/CSV table."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["extract", "results_table"]


def results_table(geometry_ids: list[Any], response: Any, id_column: str) -> Any:
    """One row per geometry; ``<dataset>_value`` / ``_quality`` / ``_coverage`` columns
    per dataset (the dataset id's ``:`` becomes ``__``)."""
    import json

    import pandas as pd

    rows = []
    for gid, item in zip(geometry_ids, response.items, strict=True):
        row: dict[str, Any] = {id_column: gid}
        for r in item.results:
            p = r.dataset_id.replace(":", "__")
            v = r.value
            row[f"{p}_value"] = json.dumps(v) if isinstance(v, dict | list) else v
            row[f"{p}_quality"] = r.quality.value
            row[f"{p}_coverage"] = r.coverage_fraction
        rows.append(row)
    return pd.DataFrame(rows)


def extract(
    geometries: Annotated[Path, typer.Option(help="Vector file (GeoPackage, GeoJSON, ...).")],
    datasets: Annotated[str, typer.Option(help="Comma-separated dataset ids.")],
    out: Annotated[
        Path,
        typer.Option(help="Output table: .parquet or .csv (its folder is created when missing)."),
    ],
    id_column: Annotated[
        str | None, typer.Option(help="Column naming each geometry (default: row number).")
    ] = None,
    aggregation: Annotated[str, typer.Option(help="mean, median, min, max, ...")] = "mean",
    layer: Annotated[str | None, typer.Option(help="Layer of a multi-layer file.")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Geometries per engine batch.")] = 1000,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker processes for the zonal statistics (default: the "
            "zonal_processes setting; 0: in-process).",
        ),
    ] = None,
) -> None:
    """Statistics of each dataset under each geometry, one row per geometry."""
    import geopandas as gpd
    import pandas as pd
    from rich.console import Console
    from rich.progress import Progress

    from ..attributes import batch_extract_sync, shutdown_zonal_pool
    from ..config import settings_override

    console = Console(stderr=True)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("--out must end in .parquet or .csv")
    # before the (possibly hours-long) extraction, not when the table is written
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"cannot create the folder of --out {out}: {exc}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write to the folder of --out {out}")
    try:
        gdf = gpd.read_file(geometries, layer=layer) if layer else gpd.read_file(geometries)
    except Exception as exc:  # pyogrio: missing file, unknown format or layer
        raise typer.BadParameter(f"cannot read --geometries {geometries}: {exc}") from None
    if gdf.empty:
        raise typer.BadParameter(f"--geometries {geometries} holds no features")
    if id_column is not None and id_column not in gdf.columns:
        raise typer.BadParameter(f"no column {id_column!r} in {geometries}")
    ids = list(gdf[id_column]) if id_column else list(range(len(gdf)))
    col = id_column or "row"
    frames = []
    warnings: list[str] = []
    overrides = {} if processes is None else {"zonal_processes": processes}
    with Progress(console=console, disable=not progress) as bar, settings_override(**overrides):
        task = bar.add_task("extracting", total=len(gdf))
        try:
            for start in range(0, len(gdf), chunk_size):
                part = gdf.iloc[start : start + chunk_size]
                resp = batch_extract_sync(part, datasets, aggregation=aggregation)
                warnings += resp.warnings
                frames.append(results_table(ids[start : start + chunk_size], resp, col))
                bar.advance(task, len(part))
        finally:
            shutdown_zonal_pool()
    table = pd.concat(frames, ignore_index=True)
    if len(table.columns) == 1:  # only the ids: every dataset failed for every geometry
        reasons = " ".join("; ".join(dict.fromkeys(warnings)).split()) or "no results"
        typer.echo(f"error: every dataset failed, nothing written: {reasons}", err=True)
        raise typer.Exit(code=1)
    # unique per run: two runs writing one --out never share (or delete) a temp file
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        if out.suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
        tmp.replace(out)  # never leave a half-written table at the output path
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for w in dict.fromkeys(warnings):
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"wrote {len(table)} rows to {out}")
