"""The ``tessellum`` command line (typer + rich).

Each command group lives in its own module and is registered here; heavy imports
happen inside the commands, so ``tessellum --help`` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tessellum",
    help="An index-first raster engine for Cloud-Optimized GeoTIFFs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _register() -> None:
    from ..service import cli as service_cli
    from . import build as build_cli
    from . import datasets as datasets_cli
    from . import extract as extract_cli
    from . import extract_raster as extract_raster_cli
    from . import world

    app.add_typer(world.app, name="world")
    app.add_typer(build_cli.app, name="build")
    app.command("info")(build_cli.info)
    app.command("datasets")(datasets_cli.datasets)
    app.command("extract-raster")(extract_raster_cli.extract_raster)
    app.command("extract")(extract_cli.extract)
    app.command("serve")(service_cli.serve)


_register()


def main() -> None:
    """Console-script entry point. Errors a user can cause (bad values, paths,
    unreadable inputs) end the command with one line on stderr and exit code 1, not a
    traceback; Ctrl-C exits 130."""
    from pyarrow.lib import ArrowException

    from ..errors import TessellumError

    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (TessellumError, OSError, ValueError, LookupError, ArrowException) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(1) from None
