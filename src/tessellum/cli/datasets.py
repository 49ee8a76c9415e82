"""``tessellum datasets``: list the datasets of the catalog."""

from __future__ import annotations

import json
from typing import Annotated

import typer

__all__ = ["datasets", "format_resolution"]

# CRSs whose units are degrees; resolution is shown in arc-seconds for them
_GEOGRAPHIC = {"EPSG:4326", "EPSG:4269", "EPSG:4258", "EPSG:4283", "OGC:CRS84"}


def format_resolution(resolution: float, crs: str) -> str:
    """Human pixel size: arc-seconds for geographic CRSs, CRS units otherwise."""
    if crs.upper() in _GEOGRAPHIC:
        return f"{resolution * 3600:.3g}″"
    return f"{resolution:g}"


def datasets(
    provider: Annotated[
        str | None, typer.Option(help="Only datasets of this provider slug.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only 'continuous' or 'categorical' datasets.")
    ] = None,
    raster_only: Annotated[
        bool, typer.Option("--raster-only", help="Only datasets raster mode supports.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the entries as JSON instead of a table.")
    ] = False,
) -> None:
    """List known datasets: id, provider, protocol, units, kind, resolution, license."""
    from rich.console import Console
    from rich.table import Table

    from ..catalog import default_catalog
    from ..errors import TessellumError

    if kind is not None and kind not in ("continuous", "categorical"):
        raise typer.BadParameter("must be 'continuous' or 'categorical'", param_hint="--kind")
    try:
        entries = default_catalog().list(
            provider=provider, kind=kind, supports_raster=True if raster_only else None
        )
    except TessellumError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None

    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return

    table = Table(title=f"tessellum datasets ({len(entries)})")
    for name in ("id", "provider", "protocol", "units", "kind", "native res", "raster", "license"):
        # ids never wrap; the long license text keeps a readable minimum width
        table.add_column(
            name, overflow="fold", no_wrap=name == "id", min_width=20 if name == "license" else None
        )
    for e in entries:
        table.add_row(
            e.id,
            e.provider,
            e.protocol,
            e.units,
            e.kind,
            format_resolution(e.native_resolution, e.native_crs),
            "yes" if e.supports_raster else "no",
            e.license,
        )
    console = Console()
    if not entries:
        console.print("no datasets match")
        return
    console.print(table)
