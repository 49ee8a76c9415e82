"""``tessellum world ...``: generate and serve the fixture world."""

from __future__ import annotations

import typer

app = typer.Typer(help="Generate, list and serve the synthetic fixture world.", no_args_is_help=True)
