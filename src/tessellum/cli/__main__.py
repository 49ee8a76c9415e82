"""``python -m tessellum.cli``: the same as the ``tessellum`` command."""

from . import main

main()
