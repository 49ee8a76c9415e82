"""The fixture world: synthetic, realistic GeoTIFFs + STAC, generated once and cached.

``get_world(size)`` returns a :class:`World` rooted at
``<cache>/<size>-<spechash>/``. The spec hash covers the whole specification (every
file's layout and content parameters, the seed) and :data:`GENERATOR_VERSION`, so a
changed spec lands in a new directory and an unchanged one is reused as is.

Layout of a world root::

    data/<collection>/...tif     the GeoTIFFs (and two corrupt files in edge-cases)
    stac/catalog.json            static catalog, relative hrefs (works over HTTP too)
    world.json                   manifest: files with their spec, items, collections

Datasets (see ``_world_spec`` for every number):

* ``cop-dem-glo-30``: float32 1-degree tiles named like the real ones, on the real
  GLO-30 grid: pixel *centres* sit on the integer-degree lattice, so a tile's outer edge
  is half a pixel beyond the degree (left = lon0 - res/2, top = lat0 + 1 + res/2), the
  east/south shared row/column is dropped (N x N pixels), and the file declares
  ``AREA_OR_POINT=Point`` (tiepoint at the integer degree) exactly like the AWS COGs.
  Elevations come from :func:`tessellum.testing.dem_elevation`, so tiles agree across seams.
* ``esa-worldcover``: uint8 classes on the 3-degree grid (nodata 0), MODE overviews.
* ``sentinel-2-l2a``: one COG per band, two UTM zones (32611/32612) meeting at
  lon -114, three dates per scene, SCL 0-11, DEFLATE or ZSTD + predictor 2.
* ``naip``: 0.6 m uint8 pixel-interleaved tiles in EPSG:26912: JPEG (RGBN), JPEG YCbCr
  (RGB), WEBP, LERC, LERC_ZSTD.
* ``edge-cases``: codecs, dtypes, NBITS, byte order, BigTIFF, sparse, stripped, planar,
  masks, scale/offset, custom CRS, PixelIsPoint, antimeridian; plus corrupt files.
* ``bench`` size adds ``bench-large`` (one 10980x10980 COG) and ``bench-many`` (500 COGs).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from ._world_spec import GENERATOR_VERSION, build_spec

__all__ = [
    "GENERATOR_VERSION",
    "DatasetInfo",
    "World",
    "WorldFile",
    "default_cache_dir",
    "get_world",
    "world_path",
]

MANIFEST = "world.json"


@dataclasses.dataclass(frozen=True)
class WorldFile:
    """One GeoTIFF of the world (or one of its deliberately corrupt files)."""

    key: str
    """Short unique name, e.g. ``"edge/bigtiff"`` or ``"dem/N41W113"``."""
    relpath: str
    """Posix path relative to the world root, e.g. ``"data/naip/....tif"``."""
    path: Path
    """Absolute path on disk."""
    dataset: str
    """Collection id."""
    item_id: str | None
    """STAC item id (``None`` for corrupt files, which are in no item)."""
    asset_key: str
    """Asset key within the item."""
    spec: dict[str, Any]
    """Layout as written: dtype, count, width, height, blocksize, compression, predictor,
    photometric, interleave, nodata, crs, transform (GDAL 6-tuple), overviews, bigtiff,
    byteorder, sparse, nbits, corrupt (False, "truncated" or "garbage"), driver,
    area_or_point, mask, scale, offset, tiff_dtype, ..."""

    def href(self, base_url: str | None = None) -> str:
        """``base_url/relpath`` when a base URL is given, else the absolute local path."""
        return f"{base_url.rstrip('/')}/{self.relpath}" if base_url else str(self.path)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a world collection contains."""

    id: str
    title: str
    description: str
    license: str
    asset_keys: tuple[str, ...]
    band_codes: dict[str, str]
    """Asset key -> band code (e.g. ``"blue" -> "B02"``)."""


class World:
    """A generated world on disk; cheap to construct (reads ``world.json`` only)."""

    def __init__(self, root: str | os.PathLike[str]):
        """Load the world whose manifest is ``root/world.json``.

        Raises:
            ValidationError: ``root`` holds no generated world.
        """
        self.root = Path(root).resolve()
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise ValidationError(f"no fixture world at {self.root} (missing {MANIFEST})")
        manifest = json.loads(manifest_path.read_text())
        self.size: str = manifest["size"]
        self.seed: int = manifest["seed"]
        self.spec_hash: str = manifest["spec_hash"]
        self._entries: list[dict[str, Any]] = manifest["files"]
        self._items: list[dict[str, Any]] = manifest["items"]
        self._collections: list[dict[str, Any]] = manifest["collections"]
        self.files: list[WorldFile] = [
            WorldFile(
                key=e["key"],
                relpath=e["relpath"],
                path=self.root / e["relpath"],
                dataset=e["dataset"],
                item_id=e["item_id"],
                asset_key=e["asset_key"],
                spec=e["spec"],
            )
            for e in self._entries
        ]
        self.datasets: dict[str, DatasetInfo] = {
            ds_id: DatasetInfo(
                id=ds_id,
                title=d["title"],
                description=d["description"],
                license=d["license"],
                asset_keys=tuple(d["asset_keys"]),
                band_codes=dict(d["band_codes"]),
            )
            for ds_id, d in manifest["datasets"].items()
        }
        self._by_name: dict[str, WorldFile] = {}
        for f in self.files:
            self._by_name[f.key] = f
            self._by_name[f.relpath] = f

    def __repr__(self) -> str:
        return f"World(size={self.size!r}, root={str(self.root)!r}, files={len(self.files)})"

    @property
    def static_catalog(self) -> Path:
        """Root ``catalog.json`` of the on-disk static catalog."""
        return self.root / "stac" / "catalog.json"

    def file(self, key: str) -> WorldFile:
        """A file by its short key (``"edge/bigtiff"``) or its relpath.

        Raises:
            ValidationError: No such file (the message suggests close keys).
        """
        try:
            return self._by_name[key]
        except KeyError:
            close = difflib.get_close_matches(key, [f.key for f in self.files], n=3)
            raise ValidationError(f"no world file {key!r}; close: {close}") from None

    def files_of(self, dataset: str) -> list[WorldFile]:
        """Files of one collection, in world order."""
        return [f for f in self.files if f.dataset == dataset]

    def expected_array(self, key: str) -> Any:
        """The exact array handed to GDAL for a file (``(count, rows, cols)`` numpy).

        Equal to what a reader must decode for lossless codecs; NBITS/float16 files hold
        it exactly too. Masked-out pixels are 0; sparse blocks hold nodata (or 0).
        """
        from ._world_render import render

        entry = next(e for e in self._entries if e["key"] == self.file(key).key)
        return render(entry, self.seed)[0]

    def _href(self, rel: str, base_url: str | None) -> str:
        return f"{base_url.rstrip('/')}/{rel}" if base_url else str(self.root / rel)

    def _item_out(self, item: dict[str, Any], base_url: str | None) -> dict[str, Any]:
        out = copy.deepcopy(item)
        for asset in out["assets"].values():
            asset["href"] = self._href(asset["href"], base_url)
        coll = f"stac/{item['collection']}/collection.json"
        me = f"stac/{item['collection']}/{item['id']}/{item['id']}.json"
        out["links"] = [
            {"rel": "self", "href": self._href(me, base_url)},
            {"rel": "root", "href": self._href("stac/catalog.json", base_url)},
            {"rel": "parent", "href": self._href(coll, base_url)},
            {"rel": "collection", "href": self._href(coll, base_url)},
        ]
        for link in out["links"]:
            link["type"] = "application/json"
        return out

    def collections(self, base_url: str | None = None) -> list[dict[str, Any]]:
        """STAC Collection dicts (fresh copies), linked into the static catalog.

        Args:
            base_url: Base URL the world root is served at (links become URLs);
                without it, links are absolute local paths.
        """
        out = []
        for coll in self._collections:
            c = copy.deepcopy(coll)
            c["links"] = [
                {"rel": "self", "href": self._href(f"stac/{c['id']}/collection.json", base_url),
                 "type": "application/json"},
                {"rel": "root", "href": self._href("stac/catalog.json", base_url),
                 "type": "application/json"},
            ]  # fmt: skip
            out.append(c)
        return out

    def items(
        self, base_url: str | None = None, collection: str | None = None
    ) -> list[dict[str, Any]]:
        """STAC Item dicts, asset hrefs at ``base_url`` (else absolute local paths).

        Args:
            base_url: Base URL the world root is served at (``f"{base_url}/{relpath}"``);
                links (self, root, parent, collection) point into the static catalog.
            collection: Only this collection's items.

        Raises:
            ValidationError: ``collection`` is not in this world.
        """
        if collection is not None and collection not in self.datasets:
            raise ValidationError(
                f"no collection {collection!r} in this world; have {sorted(self.datasets)}"
            )
        return [
            self._item_out(it, base_url)
            for it in self._items
            if collection is None or it["collection"] == collection
        ]

    def write_api_files(
        self, directory: str | os.PathLike[str], base_url: str
    ) -> tuple[Path, Path]:
        """Write ``collections.json`` (a JSON list) and ``items.ndjson`` for a STAC API.

        Returns:
            The two paths, collections first.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cpath, ipath = d / "collections.json", d / "items.ndjson"
        cpath.write_text(json.dumps(self.collections(base_url)))
        ipath.write_text("".join(json.dumps(i) + "\n" for i in self.items(base_url)))
        return cpath, ipath


# ------------------------------------------------------------------- cache & build
def _repo_root() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def default_cache_dir() -> Path:
    """Where worlds live: ``$TESSELLUM_WORLD_DIR``, else ``<repo>/.cache/world`` in a
    checkout, else ``~/.cache/tessellum/world``."""
    env = os.environ.get("TESSELLUM_WORLD_DIR")
    if env:
        return Path(env).expanduser()
    repo = _repo_root()
    return repo / ".cache" / "world" if repo else Path.home() / ".cache" / "tessellum" / "world"


def spec_hash(spec: dict[str, Any]) -> str:
    """12 hex digits identifying ``spec`` + :data:`GENERATOR_VERSION`."""
    blob = json.dumps({"v": GENERATOR_VERSION, "spec": spec}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def world_path(
    size: str = "small", *, root: str | os.PathLike[str] | None = None, seed: int = 0
) -> Path:
    """The directory ``get_world`` uses for these arguments (generated or not)."""
    base = Path(root) if root is not None else default_cache_dir()
    return base / f"{size}-{spec_hash(build_spec(size, seed))}"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_dir(final: Path, build: Callable[[Path], None], *, force: bool = False) -> Path:
    """Create ``final`` once, atomically, safe against concurrent processes.

    A complete directory is recognised by its manifest (:data:`MANIFEST`), which ``build``
    writes last. Builders run under an exclusive ``fcntl`` lock next to ``final``, into a
    temporary sibling that is renamed into place, so readers never see a partial tree.

    Args:
        final: Target directory.
        build: Fills the temporary directory it is given.
        force: Rebuild even if ``final`` exists (replaced by rename, then deleted).
    """
    if not force and (final / MANIFEST).is_file():
        return final
    with _locked(final.parent / f".{final.name}.lock"):
        if not force and (final / MANIFEST).is_file():
            return final  # another process built it while we waited
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # crashed builders (we hold the lock)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            build(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final


def generate(directory: Path, spec: dict[str, Any], *, progress: bool = False) -> None:
    """Write every file, the static catalog and the manifest of ``spec`` into ``directory``."""
    from ._world_stac import build_stac, write_static_catalog
    from ._world_write import write_entry

    t0 = time.perf_counter()
    entries = spec["files"]
    for n, entry in enumerate(entries, 1):
        write_entry(directory, entry, spec["seed"])
        if progress and (n % 25 == 0 or n == len(entries)):
            print(f"  {n}/{len(entries)} files ({time.perf_counter() - t0:.1f} s)", flush=True)
    collections, items = build_stac(spec)
    write_static_catalog(directory, collections, items)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "spec_hash": spec_hash(spec),
        "size": spec["size"],
        "seed": spec["seed"],
        "generation_seconds": round(time.perf_counter() - t0, 2),
        "datasets": spec["datasets"],
        "files": entries,
        "collections": collections,
        "items": items,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest))  # last: marks completion


def get_world(
    size: str = "small",
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> World:
    """The fixture world of ``size``, generated on first use and cached on disk.

    Args:
        size: ``"small"`` (~10 s, ~45 MB) or ``"bench"`` (adds the benchmark files).
        root: Cache directory holding worlds (default :func:`default_cache_dir`); the world
            itself is ``root/<size>-<spechash>``.
        seed: Seed of all synthetic content.
        force: Regenerate even if cached.
        progress: Print progress lines while generating.

    Returns:
        The loaded :class:`World`.

    Raises:
        ValidationError: ``size`` is unknown.
    """
    spec = build_spec(size, seed)
    base = Path(root) if root is not None else default_cache_dir()
    final = base / f"{size}-{spec_hash(spec)}"
    ensure_dir(final, lambda tmp: generate(tmp, spec, progress=progress), force=force)
    return World(final)
