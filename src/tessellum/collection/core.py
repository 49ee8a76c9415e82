"""``Collection``: a table of raster records with cached COG headers.

A thin shell over a ``pyarrow.Table``: filtering returns new collections (views), the
table itself is the state. Read methods (``get_xarray`` ...) live in ``tessellum.read``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from ._read_methods import ReadMethods
from .schema import METADATA_SUFFIX, band_column, band_names


class Collection(ReadMethods):
    """Raster records (rows) with footprints, assets and per-band COG headers.

    Args:
        table: the collection table (see ``tessellum.collection.schema``).
        name: a human name (also used for the build cache).
        data_source: the source identifier (e.g. a STAC collection id) for band mapping.
        cloud_config: how its files are reached (``tessellum.store.CloudConfig``: URL
            rewrites, requester pays, client options); reads use it as the build did.
        signer: a ``UrlSigner`` for its files (e.g. Planetary Computer SAS tokens),
            applied to every read.

    ``cloud_config`` and ``signer`` are attributes of the object, kept by every
    collection filtered from it but not saved by :meth:`export` (they may hold
    credentials or code): pass them again to :meth:`load`, or set them.
    """

    def __init__(
        self,
        table: pa.Table,
        *,
        name: str | None = None,
        data_source: str | None = None,
        cloud_config: Any = None,
        signer: Any = None,
    ) -> None:
        missing = [c for c in ("id", "geometry", "bbox", "assets") if c not in table.column_names]
        if missing:
            raise ValidationError(f"not a collection table: missing columns {missing}")
        self._table = table
        self.name = name
        self.data_source = data_source
        self.cloud_config = cloud_config
        self.signer = signer
        from ..read.sources import track_lineage

        track_lineage(table)  # parsed headers are kept across reads of this collection

    def __setstate__(self, state: dict[str, Any]) -> None:
        # unpickled (e.g. in a spawned DataLoader worker): a new table, a new lineage
        from ..read.sources import track_lineage

        self.__dict__.update(state)
        track_lineage(self._table)

    # -- table protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"Collection(name={self.name!r}, records={len(self)}, bands={self.bands})"

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """Arrow PyCapsule export: ``pa.table(collection)``, DuckDB, Polars read it directly."""
        return self._table.__arrow_c_stream__(requested_schema)

    @property
    def table(self) -> pa.Table:
        return self._table

    def to_table(self) -> pa.Table:
        """The underlying Arrow table (the filtered view)."""
        return self._table

    def to_geopandas(self):
        """A GeoDataFrame of the records (headers as dict columns), CRS84 footprints."""
        import geopandas as gpd

        df = self._table.drop_columns(["geometry"]).to_pandas(maps_as_pydicts="strict")
        geom = gpd.GeoSeries.from_wkb(
            self._table.column("geometry").to_numpy(zero_copy_only=False), crs="OGC:CRS84"
        )
        return gpd.GeoDataFrame(df, geometry=geom)

    def _derive(self, table: pa.Table) -> Collection:
        """A collection of some of this one's rows (sharing its parsed headers)."""
        from ..read.sources import track_lineage

        derived = Collection(
            table, name=self.name, data_source=self.data_source,
            cloud_config=self.cloud_config, signer=self.signer,
        )  # fmt: skip
        track_lineage(table, parent=self._table)
        return derived

    # -- description ----------------------------------------------------------------
    @property
    def bands(self) -> list[str]:
        """Band codes with a header column."""
        return band_names(self._table.schema)

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) of all footprints in CRS84 (None when empty)."""
        if not len(self):
            return None
        from ..geo.bbox import lon_extent

        b = self._table.column("bbox").drop_null()
        if not len(b):
            return None
        west, east = lon_extent(pc.struct_field(b, "xmin"), pc.struct_field(b, "xmax"))
        south = pc.min(pc.struct_field(b, "ymin")).as_py()
        north = pc.max(pc.struct_field(b, "ymax")).as_py()
        return (west, south, east, north)

    @property
    def crs(self) -> list[str]:
        """Distinct raster CRSs of the records (EPSG codes or WKT2)."""
        if "crs" not in self._table.column_names:
            return []
        return [c for c in pc.unique(self._table.column("crs")).to_pylist() if c is not None]

    def describe(self) -> dict[str, Any]:
        """A summary: counts, time span, bounds, CRSs, and per band dtype/size/codec/errors."""
        t = self._table
        out: dict[str, Any] = {
            "name": self.name,
            "records": len(self),
            "collections": [c for c in pc.unique(t.column("collection")).to_pylist() if c]
            if "collection" in t.column_names
            else [],
            "bands": self.bands,
            "crs": self.crs,
            "bounds": self.bounds,
        }
        if "datetime" in t.column_names and len(self):
            out["time_range"] = (
                pc.min(t.column("datetime")).as_py(),
                pc.max(t.column("datetime")).as_py(),
            )
        if "eo:cloud_cover" in t.column_names and len(self):
            out["cloud_cover"] = (
                pc.min(t.column("eo:cloud_cover")).as_py(),
                pc.max(t.column("eo:cloud_cover")).as_py(),
            )
        per_band = {}
        for band in self.bands:
            col = t.column(band_column(band))
            errors = pc.sum(pc.invert(pc.is_null(pc.struct_field(col, "error")))).as_py() or 0
            ok = col.filter(pc.is_null(pc.struct_field(col, "error")))
            first = ok[0].as_py() if len(ok) else None
            per_band[band] = {
                "dtype": first and first.get("dtype"),
                "width": first and first.get("width"),
                "height": first and first.get("height"),
                "compression": first and first.get("compression"),
                "overviews": first and max(len(first.get("levels") or []) - 1, 0),
                "errors": errors,
            }
        out["band_details"] = per_band
        return out

    def errors(self) -> pa.Table:
        """``(id, band, error)`` for every band asset whose header failed."""
        ids, bands, msgs = [], [], []
        for band in self.bands:
            err = pc.struct_field(self._table.column(band_column(band)), "error")
            mask = pc.invert(pc.is_null(err))
            ids += self._table.column("id").filter(mask).to_pylist()
            msgs += err.filter(mask).to_pylist()
            bands += [band] * (len(msgs) - len(bands))
        return pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "band": pa.array(bands, pa.string()),
                "error": pa.array(msgs, pa.string()),
            }
        )

    # -- filtering ------------------------------------------------------------------
    def where(self, expression: Any) -> Collection:
        """Rows matching a ``pyarrow.compute`` expression or a boolean mask."""
        if isinstance(expression, pc.Expression):
            try:
                return self._derive(self._table.filter(expression))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(f"where({expression}): {exc}") from None
        try:
            mask = (
                expression
                if isinstance(expression, pa.Array | pa.ChunkedArray)
                else pa.array(expression, pa.bool_())
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise ValidationError(f"where: a mask must be booleans ({exc})") from None
        if len(mask) != self._table.num_rows or not pa.types.is_boolean(mask.type):
            raise ValidationError(
                f"where: a mask must be {self._table.num_rows} booleans, got {len(mask)} "
                f"values of type {mask.type}"
            )
        return self._derive(self._table.filter(mask))

    def head(self, n: int = 5) -> Collection:
        """The first ``n`` records."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValidationError(f"head: n must be a non-negative int, got {n!r}")
        return self._derive(self._table.slice(0, n))

    def valid(self, bands: Sequence[str] | None = None) -> Collection:
        """Records whose headers parsed for every band in ``bands`` (default: all)."""
        if isinstance(bands, str):
            bands = [bands]
        unknown = [b for b in bands or () if b not in self.bands]
        if unknown:
            raise ValidationError(f"valid: unknown bands {unknown} (available: {self.bands})")
        mask = None
        for band in bands or self.bands:
            ok = pc.is_null(pc.struct_field(self._table.column(band_column(band)), "error"))
            mask = ok if mask is None else pc.and_(mask, ok)
        return self if mask is None else self._derive(self._table.filter(mask))

    def subset(
        self,
        *,
        cloud_cover_lt: float | None = None,
        date_range: Sequence[Any] | None = None,
        bbox: Any = None,
        geometries: Any = None,
        split: str | Sequence[str] | None = None,
    ) -> Collection:
        """Filter by cloud cover, an inclusive date range, a lon/lat bbox, geometries (any
        CRS; exact footprint intersection) and/or a ``split`` column value."""
        from ..geo.bbox import as_bbox
        from ..geo.geometry import coerce_geometries
        from .dates import parse_date_range
        from .filters import bbox_mask, date_mask, geometry_mask

        t = self._table
        if cloud_cover_lt is not None:
            if "eo:cloud_cover" not in t.column_names:
                raise ValidationError(
                    "cloud_cover_lt: this collection has no 'eo:cloud_cover' column"
                )
            if not isinstance(cloud_cover_lt, int | float) or isinstance(cloud_cover_lt, bool):
                raise ValidationError(
                    f"cloud_cover_lt must be a number (percent), got {cloud_cover_lt!r}"
                )
            t = t.filter(pc.fill_null(pc.less(t.column("eo:cloud_cover"), cloud_cover_lt), False))
        rng = parse_date_range(date_range)
        if rng is not None:
            t = t.filter(date_mask(t, *rng))
        if bbox is not None:
            t = t.filter(bbox_mask(t, as_bbox(bbox)))
        if geometries is not None:
            g = coerce_geometries(geometries)
            t = t.filter(geometry_mask(t, g.geoms, g.crs))
        if split is not None:
            if "split" not in t.column_names:
                raise ValidationError("split: this collection has no 'split' column")
            values = [split] if isinstance(split, str) else list(split)
            t = t.filter(pc.is_in(t.column("split"), pa.array(values)))
        return self._derive(t)

    # -- records --------------------------------------------------------------------
    def iterate_rasters(self) -> Iterator[Any]:
        """Yield a ``RasterAccessor`` per record."""
        import shapely

        from .accessor import RasterAccessor, RasterInfo

        cols = self._table.column_names
        meta_cols = [c for c in cols if c.endswith(METADATA_SUFFIX)]
        for row in self._table.to_pylist(maps_as_pydicts="strict"):
            b = row.get("bbox")
            info = RasterInfo(
                id=row["id"],
                datetime=row.get("datetime"),
                bbox=(b["xmin"], b["ymin"], b["xmax"], b["ymax"]) if b else None,
                footprint=shapely.from_wkb(row["geometry"]) if row.get("geometry") else None,
                crs=row.get("crs"),
                cloud_cover=row.get("eo:cloud_cover"),
                assets=row.get("assets") or {},
                band_metadata={c: row[c] for c in meta_cols},
                collection=row.get("collection"),
            )
            yield RasterAccessor(info, self.data_source, collection=self)

    # -- persistence ----------------------------------------------------------------
    def export(self, path: str | os.PathLike) -> Path:
        """Write this (filtered) collection as partitioned GeoParquet 1.1; returns the path."""
        from .io import write_collection

        return write_collection(
            self._table, path, name=self.name, extra={"data_source": self.data_source}
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, cloud_config: Any = None, signer: Any = None
    ) -> Collection:
        """Load a collection written by :meth:`export` or a build; ``cloud_config`` and
        ``signer`` as for the constructor (not saved with the collection)."""
        from .io import read_collection

        table, meta = read_collection(path)
        return cls(
            table, name=meta.get("name"), data_source=meta.get("data_source"),
            cloud_config=cloud_config, signer=signer,
        )  # fmt: skip


def load(path: str | os.PathLike, *, cloud_config: Any = None, signer: Any = None) -> Collection:
    """Load a saved collection (see :meth:`Collection.export`)."""
    return Collection.load(path, cloud_config=cloud_config, signer=signer)
