"""Headers a build cannot use become that row's error (never the build's), headers GDAL
opens are indexed as GDAL reads them, and a corrupt header costs one read."""

from __future__ import annotations

import struct
import sys
import warnings
from pathlib import Path

import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from _cogfactory import write_cog
from tessellum.collection import build_from_files
from tessellum.testing.servers import HttpServer


def test_corrupt_tag_count_costs_one_read(tmp_path: Path) -> None:
    """TileByteCounts' count set to 2**30 in a 200 MB object: the prefix response's
    Content-Range gives the object's size, so the header fails after that one read
    instead of downloading the object."""
    path, _ = write_cog(tmp_path / "big.tif", shape=(512, 512), overviews=())
    with open(path, "ab") as f:
        f.truncate(200 * 2**20)
    with tifffile.TiffFile(path) as tf:
        pos = tf.pages[0].tags[325].offset
    with open(path, "r+b") as f:
        f.seek(pos + 4)
        f.write(struct.pack("<I", 2**30))
    with HttpServer(tmp_path) as http:
        http.reset_log()
        url = f"{http.url}/big.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coll = build_from_files([url], name="big", progress=False)
        reqs = http.requests()
    (err,) = coll.errors().to_pylist()
    assert "beyond the end of file" in err["error"] and url in err["error"]
    assert len(reqs) == 1 and sum(r.bytes_sent for r in reqs) < 2**20
