"""tessellum benchmarks: named tasks, "ours" vs peers, over local servers with latency.

Run ``.venv/bin/python -m benchmarks.run --help``. Registry: :mod:`benchmarks.registry`;
the tessellum cases plug in at :mod:`benchmarks.ours`.
"""
