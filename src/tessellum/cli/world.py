"""``tessellum world ...``: generate and list the fixture world."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(
    help="Generate, list and serve the synthetic fixture world.", no_args_is_help=True
)


class WorldSize(StrEnum):
    """The fixture world's sizes."""

    small = "small"
    bench = "bench"


SizeOption = Annotated[
    WorldSize, typer.Option("--size", case_sensitive=False, help="World size: small or bench.")
]


def _codec(spec: dict) -> str:
    codec = spec["compression"].lower()
    if spec["predictor"] > 1:
        codec += f"+p{spec['predictor']}"
    if spec["photometric"] == "YCBCR":
        codec += " ycbcr"
    if spec["corrupt"]:
        codec += f" ({spec['corrupt']})"
    return codec


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@app.command()
def generate(
    size: SizeOption = WorldSize.small,
    force: Annotated[bool, typer.Option("--force", help="Regenerate even if cached.")] = False,
) -> None:
    """Generate the world (cached; instant when it exists) and print its root."""
    import time

    from ..testing import get_world

    t0 = time.perf_counter()
    world = get_world(size, force=force, progress=True)
    total = sum(f.path.stat().st_size for f in world.files)
    typer.echo(f"root: {world.root}")
    typer.echo(
        f"{len(world.files)} files ({_human(total)}), {len(world.items())} items, "
        f"{len(world.datasets)} collections in {time.perf_counter() - t0:.1f} s"
    )
    typer.echo(f"static catalog: {world.static_catalog}")


@app.command("list")
def list_files(size: SizeOption = "small") -> None:
    """Print a table of the world's files (generating the world if needed)."""
    from rich.console import Console
    from rich.table import Table

    from ..testing import get_world

    world = get_world(size)
    table = Table(title=f"tessellum world ({size}) at {world.root}")
    for col in ("key", "dataset", "dtype", "bands", "size px", "codec", "block", "file size"):
        table.add_column(col, justify="right" if col in ("file size", "bands") else "left")
    for f in world.files:
        s = f.spec
        block = f"{s['blocksize']}" if s["blocksize"] else f"strip {s['rows_per_strip']}"
        dtype = s.get("tiff_dtype", s["dtype"]) + (f" nbits={s['nbits']}" if s["nbits"] else "")
        table.add_row(
            f.key,
            f.dataset,
            dtype,
            str(s["count"]),
            f"{s['width']}x{s['height']}",
            _codec(s),
            block,
            _human(f.path.stat().st_size),
        )
    Console().print(table)


@app.command()
def serve(
    size: SizeOption = WorldSize.small,
    stac: Annotated[str, typer.Option(help="STAC API: rustac, pgstac or none.")] = "rustac",
    latency_ms: Annotated[
        float | None,
        typer.Option("--latency-ms", min=0, help="Add a latency proxy in front of HTTP."),
    ] = None,
    s3: Annotated[
        bool, typer.Option("--s3", help="Also serve the data from an S3 server.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
) -> None:
    """Serve the world on 127.0.0.1 (HTTP with Range, a STAC API, optionally S3) and print
    the endpoints; everything stops on Ctrl-C."""
    import time

    from ..testing import get_world
    from ..testing.serve import serve_world

    if stac not in ("rustac", "pgstac", "none"):
        raise typer.BadParameter(f"stac must be rustac, pgstac or none, got {stac!r}")
    world = get_world(size)
    with serve_world(
        world, stac=None if stac == "none" else stac, latency_ms=latency_ms, s3=s3
    ) as w:
        typer.echo(f"HTTP      {w.http.url}  ({w.http.backend}, serving {world.root})")
        if w.proxy is not None:
            typer.echo(f"data URL  {w.data_url}  (+{latency_ms:g} ms per request)")
        if w.stac is not None:
            typer.echo(f"STAC API  {w.stac_url}  ({stac})")
            typer.echo(f"          export TESSELLUM_STAC_API={w.stac_url}")
        if w.s3 is not None:
            typer.echo(f"S3        {w.s3.endpoint}  (bucket 'world', prefix 'data/')")
        typer.echo("Ctrl-C to stop")
        try:
            if duration is None:
                while True:
                    time.sleep(3600)
            time.sleep(duration)
        except KeyboardInterrupt:
            pass
