"""Save and load collections as GeoParquet 1.1 (zstd), partitioned by year/month.

The files are plain GeoParquet: GeoPandas, DuckDB and pyarrow read them without
tessellum installed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..errors import CollectionError, ValidationError
from .schema import PARTITION_COLUMNS, geoparquet_metadata

COLLECTION_META_KEY = b"tessellum"


def write_collection(
    table: pa.Table, path: str | os.PathLike, *, name: str | None = None, extra: dict | None = None
) -> Path:
    """Write ``table`` as a partitioned GeoParquet dataset at ``path`` atomically
    (written to a temp directory beside it, then renamed over any previous one)."""
    dest = _local_path(path, "export")
    if dest.is_symlink():  # replace what the link points at; the link stays
        dest = dest.resolve()
    _check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = geoparquet_metadata(table)
    meta[COLLECTION_META_KEY] = json.dumps({"name": name, **(extra or {})}).encode()
    table = table.replace_schema_metadata(meta)
    # a unique sibling, made with the umask's mode like any folder (mkdtemp's is 0700)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        part_schema = pa.schema([table.schema.field(c) for c in PARTITION_COLUMNS])
        if _every_row_dated(table) and _derived_partitions(table):
            pads.write_dataset(
                table,
                tmp,
                format="parquet",
                partitioning=pads.partitioning(part_schema, flavor="hive"),
                file_options=pads.ParquetFileFormat().make_write_options(compression="zstd"),
                basename_template=f"part-{uuid.uuid4().hex[:8]}-{{i}}.parquet",
                existing_data_behavior="overwrite_or_ignore",
            )
        else:  # a null partition (year=__HIVE_DEFAULT_PARTITION__) breaks GeoPandas' read
            pq.write_table(table, tmp / "part-0.parquet", compression="zstd")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _local_path(path: str | os.PathLike, what: str) -> Path:
    """The local folder ``path`` names (a ``file://`` URL's path). Collections are saved
    to and loaded from local folders: another URL is refused by name (``Path("s3://b/c")``
    is the local folder ``s3:/b/c``, made beside the cwd).

    Raises:
        ValidationError: for a URL that is not ``file://``.
    """
    text = os.fspath(path)
    if isinstance(text, str) and text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    if isinstance(text, str) and "://" in text:
        raise ValidationError(
            f"{what}: {text!r} is a URL; collections are saved to and loaded from local "
            "folders (copy the folder to or from the object store)"
        )
    return Path(text)


def _check_replaceable(dest: Path) -> None:
    """Refuse to replace anything but a collection written here before (or an empty
    folder): a file, or a folder holding anything but Parquet parts that carry this
    library's metadata in year/month partitions, is the user's."""
    if not dest.exists():
        return
    if not (dest.is_dir() and _is_collection_dir(dest)):
        what = "a folder that is not a collection" if dest.is_dir() else "a file"
        raise ValidationError(
            f"{dest} is {what}: a collection replaces only a collection written there "
            "before (choose another path, or remove it)"
        )


def _is_collection_dir(folder: Path) -> bool:
    """Whether ``folder`` holds only what :func:`write_collection` writes: Parquet parts
    with the collection metadata key, in ``year=``/``month=`` partition folders."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry.name.startswith(("year=", "month=")):
            if not _is_collection_dir(entry):
                return False
        elif entry.is_file() and entry.suffix == ".parquet":
            try:
                meta = pq.read_schema(entry).metadata or {}
            except (pa.ArrowInvalid, OSError):
                return False
            if COLLECTION_META_KEY not in meta:
                return False
        else:
            return False
    return True


def _every_row_dated(table: pa.Table) -> bool:
    """Whether every row has a partition value (else the table is written unpartitioned:
    pyarrow writes null partitions as ``year=__HIVE_DEFAULT_PARTITION__``, which
    ``geopandas.read_parquet`` cannot unify with the dated ones)."""
    col = PARTITION_COLUMNS[0]
    return col in table.column_names and table.num_rows > 0 and table.column(col).null_count == 0


def _derived_partitions(table: pa.Table) -> bool:
    """Whether ``year``/``month`` are the ones derived from ``datetime`` (int16/int8, equal
    to its UTC year and month). A record table's own ``year``/``month`` columns (a crop
    year, a label) are kept as they are, so the export does not partition on them."""
    import pyarrow.compute as pc

    names = table.column_names
    if not all(c in names for c in ("datetime", *PARTITION_COLUMNS)):
        return False
    if (table.schema.field("year").type, table.schema.field("month").type) != _PART_TYPES:
        return False
    when = table.column("datetime")
    try:
        return bool(
            pc.all(pc.equal(pc.year(when).cast(pa.int16()), table.column("year"))).as_py()
            and pc.all(pc.equal(pc.month(when).cast(pa.int8()), table.column("month"))).as_py()
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


_PART_TYPES = (pa.int16(), pa.int8())


def read_collection(path: str | os.PathLike) -> tuple[pa.Table, dict]:
    """Read a collection written by :func:`write_collection` (or any GeoParquet file or
    directory with the collection columns). Returns the table and its tessellum metadata."""
    src = _local_path(path, "load")
    if not src.exists():
        raise CollectionError(f"no collection at {src}")
    try:
        part = None
        if src.is_dir() and any(src.glob("year=*")):
            part = pads.partitioning(
                pa.schema([("year", pa.int16()), ("month", pa.int8())]), flavor="hive"
            )
        dataset = pads.dataset(src, format="parquet", partitioning=part)
        table = dataset.to_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise CollectionError(f"cannot read collection at {src}: {exc}") from exc
    first = next(iter(dataset.files), None)
    meta: dict = {}
    schema_meta = pq.read_schema(first).metadata if first else None
    if schema_meta and COLLECTION_META_KEY in schema_meta:
        meta = json.loads(schema_meta[COLLECTION_META_KEY])
    if schema_meta:
        table = table.replace_schema_metadata(
            {k: v for k, v in schema_meta.items() if k != b"ARROW:schema"}
        )
    # hive partitions come back as dictionary-encoded int32; restore the written types
    # (unpartitioned files keep their year/month as written: they may be the user's)
    for col, typ in zip(PARTITION_COLUMNS, _PART_TYPES, strict=True) if part else ():
        if col in table.column_names:
            i = table.column_names.index(col)
            table = table.set_column(i, col, table.column(col).cast(typ))
    if "id" in table.column_names:
        table = (
            table.sort_by([("datetime", "ascending"), ("id", "ascending")])
            if "datetime" in table.column_names
            else table
        )
    return table, meta
