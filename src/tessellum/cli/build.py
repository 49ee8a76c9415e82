"""``tessellum build stac|table ...`` and ``tessellum info``: build collections and
summarize saved ones.

Register with::

    app.add_typer(build.app, name="build")
    app.command("info")(build.info)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app", "info", "parse_bbox", "parse_date_range", "parse_pairs", "summary_table"]

app = typer.Typer(
    help="Build a collection (COG headers indexed once) from a STAC API or a record table.",
    no_args_is_help=True,
)

# -- option parsing (pure functions, tested directly) -------------------------------------------


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``"W,S,E,N"`` -> a 4-tuple of floats (``W > E`` crosses the antimeridian)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"not numbers: {text!r}", param_hint="--bbox") from None
    if len(values) != 4:
        raise typer.BadParameter("expected west,south,east,north", param_hint="--bbox")
    return values  # type: ignore[return-value]


def parse_date_range(text: str | None) -> tuple[str | None, str | None] | None:
    """``"START/END"`` (either side may be empty or ``..``) -> ``(start, end)``."""
    if text is None:
        return None
    if "/" not in text:
        raise typer.BadParameter("expected START/END, e.g. 2024-01-01/2024-01-31")
    start, end = (p.strip() for p in text.split("/", 1))
    return (start if start not in ("", "..") else None, end if end not in ("", "..") else None)


def parse_pairs(values: list[str] | None, *, option: str, as_int: bool = False) -> dict[str, Any]:
    """``["B04=red", ...]`` -> ``{"B04": "red"}`` (values as int with ``as_int``)."""
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"expected CODE=VALUE, got {item!r}", param_hint=option)
        try:
            out[key.strip()] = int(value) if as_int else value.strip()
        except ValueError:
            raise typer.BadParameter(f"not an integer: {item!r}", param_hint=option) from None
    return out


def _parse_json(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=option) from None


# -- output --------------------------------------------------------------------------------------


def summary_table(coll: Any, *, title: str | None = None) -> Any:
    """A rich table summarizing a collection: records, time span, bounds, CRSs, and one
    row per band (dtype, size, codec, overviews, failed headers)."""
    from rich.table import Table

    d = coll.describe()
    table = Table(title=title or f"collection {d['name'] or ''}".strip(), show_lines=False)
    table.add_column("band")
    for col in ("dtype", "size px", "compression", "overviews", "errors"):
        table.add_column(col, justify="right")
    for band, info in d["band_details"].items():
        size = f"{info['width']}x{info['height']}" if info["width"] else ""
        errors = str(info["errors"]) if not info["errors"] else f"[red]{info['errors']}[/red]"
        table.add_row(
            band,
            info["dtype"] or "",
            size,
            _codec_name(info["compression"]),
            str(info["overviews"] if info["overviews"] is not None else ""),
            errors,
        )
    caption = [f"{d['records']} records"]
    lo, hi = d.get("time_range") or (None, None)
    if lo is not None and hi is not None:
        caption.append(f"{lo:%Y-%m-%d} .. {hi:%Y-%m-%d}")
    if d.get("bounds"):
        caption.append("bounds " + ", ".join(f"{v:.4f}" for v in d["bounds"]))
    if d.get("crs"):
        crs = [c if len(c) < 40 else "custom CRS (WKT2)" for c in d["crs"]]
        caption.append("CRS " + ", ".join(sorted(set(crs))))
    if d.get("cloud_cover") and None not in d["cloud_cover"]:
        caption.append("cloud cover {:g}..{:g}%".format(*d["cloud_cover"]))
    table.caption = " · ".join(caption)
    return table


_CODECS = {1: "none", 5: "lzw", 7: "jpeg", 8: "deflate", 32773: "packbits", 32946: "deflate",
           34887: "lerc", 34925: "lzma", 50000: "zstd", 50001: "webp", 50002: "jpegxl"}  # fmt: skip


def _codec_name(code: int | None) -> str:
    return "" if code is None else _CODECS.get(code, str(code))


def _report(coll: Any, path: Path) -> None:
    from rich.console import Console

    console = Console()
    console.print(summary_table(coll))
    failed = len(coll.errors())
    if failed:
        console.print(
            f"[yellow]{failed} band assets failed; see `tessellum info --errors`[/yellow]"
        )
    console.print(f"saved: {path}")


def _check_output(path: Path) -> Path:
    """Refuse an output path the collection could not be saved to (a URL, a file, a
    user's folder) before the search and header reads, not after them."""
    import re

    from ..collection.io import _check_replaceable, _local_path
    from ..errors import ValidationError

    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(path)):  # typer's Path made s3://b of s3:/b
        raise ValidationError(
            f"--output: {str(path).replace(':/', '://', 1)!r} is a URL; collections are "
            "saved to local folders (copy the folder to the object store)"
        )
    dest = _local_path(path, "--output")
    _check_replaceable(dest.resolve() if dest.is_symlink() else dest)
    return path


def _fail(exc: Exception) -> typer.Exit:
    # one line, as ``tessellum.cli.main`` prints errors (a CQL2 parse error spans several)
    message = " ".join(str(exc).split())
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Where to save the collection (default: ./NAME)."),
]
ProgressOption = Annotated[
    bool,
    typer.Option(
        "--progress/--no-progress", help="Progress bar over assets (shown on a terminal)."
    ),
]
MaxConcurrentOption = Annotated[
    int, typer.Option("--max-concurrent", help="Header reads in flight at once.")
]
BandIndexOption = Annotated[
    list[str] | None,
    typer.Option("--band-index", help="CODE=INDEX: a sample of a multi-band asset (repeat)."),
]

# -- commands ------------------------------------------------------------------------------------


@app.command("stac")
def build_stac(
    stac_api: Annotated[str, typer.Argument(help="STAC API root (or catalog.json).")],
    collection: Annotated[str, typer.Argument(help="STAC collection id.")],
    name: Annotated[str | None, typer.Option(help="Collection name (default: id).")] = None,
    bbox: Annotated[str | None, typer.Option(help="west,south,east,north in lon/lat.")] = None,
    dates: Annotated[
        str | None, typer.Option("--dates", help="START/END; a date-only END keeps that day.")
    ] = None,
    band: Annotated[
        list[str] | None, typer.Option("--band", help="CODE=ASSET_KEY (repeat).")
    ] = None,
    band_index: BandIndexOption = None,
    query: Annotated[str | None, typer.Option(help='STAC query JSON: {"eo:cloud_cover":…}')] = None,
    cql2: Annotated[str | None, typer.Option("--filter", help="CQL2 text or JSON.")] = None,
    static_catalog: Annotated[
        bool, typer.Option("--static-catalog", help="Walk a static catalog (no /search).")
    ] = False,
    max_items: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many items.")
    ] = None,
    data_source: Annotated[str | None, typer.Option(help="Source id for band maps.")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Build cache folder (reuse identical builds).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild a cached build.")] = False,
    output: OutputOption = None,
    max_concurrent: MaxConcurrentOption = 50,
    progress: ProgressOption = True,
) -> None:
    """Search a STAC API (every page) and index every asset's COG header once."""
    from ..collection import build_from_stac
    from ..errors import TessellumError

    filter_: Any = cql2
    if cql2 is not None and cql2.lstrip().startswith("{"):
        filter_ = _parse_json(cql2, "--filter")
    try:
        out = _check_output(output or Path(name or collection))
        coll = build_from_stac(
            name=name or collection, stac_api=stac_api, collection=collection,
            data_source=data_source, band_map=parse_pairs(band, option="--band") or None,
            band_index_map=parse_pairs(band_index, option="--band-index", as_int=True) or None,
            bbox=parse_bbox(bbox), date_range=parse_date_range(dates),
            workspace_dir=workspace, force=force, max_concurrent=max_concurrent,
            query=_parse_json(query, "--query"), filter=filter_,
            static_catalog=static_catalog, max_items=max_items, progress=None if progress else False,
        )  # fmt: skip
        if not len(coll):  # nothing to save: a typo'd collection or an empty search
            raise _fail(ValueError(
                f"no items of {collection!r} match the search at {stac_api} (nothing saved)"
            ))  # fmt: skip
        path = coll.export(out)
    except TessellumError as exc:
        raise _fail(exc) from None
    _report(coll, path)


@app.command("table")
def build_table(
    source: Annotated[str, typer.Argument(help="Parquet/GeoParquet/GeoPackage record table.")],
    name: Annotated[str | None, typer.Option(help="Collection name (default: file stem).")] = None,
    href_column: Annotated[str, typer.Option(help="Column of raster URLs/paths.")] = "href",
    assets_column: Annotated[
        str | None, typer.Option(help="Column of {band: href} maps instead of --href-column.")
    ] = None,
    id_column: Annotated[str, typer.Option(help="Record id column.")] = "id",
    datetime_column: Annotated[str | None, typer.Option(help="Datetime column.")] = "datetime",
    geometry_column: Annotated[
        str | None, typer.Option(help="Footprint column (default: from the headers).")
    ] = "geometry",
    band: Annotated[str, typer.Option(help="Band name of the href column.")] = "data",
    band_index: BandIndexOption = None,
    collection: Annotated[str | None, typer.Option(help="Collection id to record.")] = None,
    output: OutputOption = None,
    max_concurrent: MaxConcurrentOption = 50,
    progress: ProgressOption = True,
) -> None:
    """Index the rasters named by a record table (one row per record)."""
    from ..collection import build_from_table
    from ..errors import TessellumError

    label = name or Path(source).stem
    try:
        out = _check_output(output or Path(label))
        coll = build_from_table(
            source, name=label, href_column=None if assets_column else href_column,
            assets_column=assets_column, id_column=id_column, datetime_column=datetime_column,
            geometry_column=geometry_column, band=band,
            band_index_map=parse_pairs(band_index, option="--band-index", as_int=True) or None,
            collection=collection, max_concurrent=max_concurrent, progress=None if progress else False,
        )  # fmt: skip
        path = coll.export(out)
    except TessellumError as exc:
        raise _fail(exc) from None
    _report(coll, path)


def info(
    path: Annotated[Path, typer.Argument(help="A saved collection (folder or GeoParquet).")],
    errors: Annotated[
        bool, typer.Option("--errors", help="Also list failed assets (JSON: failed_assets).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print describe() as JSON.")] = False,
) -> None:
    """Summarize a saved collection: records, dates, bounds, CRSs and bands."""
    from rich.console import Console
    from rich.table import Table

    from ..collection import load
    from ..errors import TessellumError

    try:
        coll = load(path)
    except TessellumError as exc:
        raise _fail(exc) from None
    if as_json:
        described = coll.describe()
        if errors:  # --errors adds the failed assets to the JSON too
            described["failed_assets"] = coll.errors().to_pylist()
        typer.echo(json.dumps(described, default=str, indent=2))
        return
    console = Console()
    console.print(summary_table(coll, title=f"{coll.name or path.name} ({path})"))
    if errors:
        failed = coll.errors().to_pylist()
        table = Table(title=f"failed band assets ({len(failed)})")
        for col in ("id", "band", "error"):
            table.add_column(col)
        for row in failed:
            table.add_row(row["id"], row["band"], row["error"])
        console.print(table)
