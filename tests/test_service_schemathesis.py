"""schemathesis against the service's OpenAPI spec (a real uvicorn on 127.0.0.1).

Every phase (examples, coverage, fuzzing, stateful) with at most 30 examples per
operation and a fixed seed: no 500, every status and body documented, schema-invalid
input rejected. ``positive_data_acceptance`` is left out: some valid-looking requests
are rightly refused for reasons a JSON schema cannot state (an unknown dataset id, a
polygon with no area, a bbox outside [-180, 180]).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _attr_world import UvicornThread, build_world
from tessellum.attributes import AttributeEngine, MemoryResultCache, StaticCollectionSource
from tessellum.service import ServiceSettings, create_app

pytest.importorskip("schemathesis")


def _st() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        pytest.skip("schemathesis CLI not found")
    return [found]


def test_openapi_fuzzing_finds_no_500(tmp_path):
    aw = build_world(tmp_path / "world")
    engine = AttributeEngine(
        catalog=aw.catalog,
        cache=MemoryResultCache(),
        collections=StaticCollectionSource(aw.collections),
    )
    app = create_app(ServiceSettings(), engine=engine, catalog=aw.catalog)
    with UvicornThread(app) as srv:
        proc = subprocess.run(
            [
                *_st(), "run", f"{srv.url}/openapi.json",
                "--max-examples", "30", "--seed", "1", "--workers", "1",
                "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                "--request-timeout", "20",
            ],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )  # fmt: skip
    tail = proc.stdout[-6000:]
    assert proc.returncode == 0, tail
    print("\n" + tail.split("SUMMARY")[-1].strip())
