"""The compiled extension (everything else is in pyproject.toml).

``tessellum._kernels`` holds the loops behind exact polygon coverage and zonal sums. It
is optional: where no C compiler is at hand the install still succeeds and those paths
run as numpy (tessellum.attributes.zonal falls back by itself).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tessellum._kernels",
            sources=["src/tessellum/_kernels.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
