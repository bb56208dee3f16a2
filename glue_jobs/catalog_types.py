"""How curated Parquet is catalogued: the Parquet SerDe and the Hive/Glue type a crawler records per Arrow type.

Shared by the CDK catalogue (declared tables, ``stacks/factories/catalog.py``) and the crawler's local
equivalent (``recsys/local/catalog.py``), so both describe a table the same way.
"""

from __future__ import annotations

import pyarrow as pa

PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def glue_type(dtype: pa.DataType) -> str:
    """The Hive/Glue type a crawler records for an Arrow (Parquet) type.

    Hive has no unsigned integers: an unsigned type gets the next wider signed one (uint64 stays
    bigint, as the crawler reads its INT64 physical type). A Null column has no type to record.
    """
    t = pa.types
    if t.is_dictionary(dtype):
        return glue_type(dtype.value_type)
    if isinstance(dtype, pa.ExtensionType):
        return glue_type(dtype.storage_type)
    simple = (
        (t.is_string, "string"),
        (t.is_large_string, "string"),
        (t.is_boolean, "boolean"),
        (t.is_int8, "tinyint"),
        (t.is_int16, "smallint"),
        (t.is_uint8, "smallint"),
        (t.is_int32, "int"),
        (t.is_uint16, "int"),
        (t.is_int64, "bigint"),
        (t.is_uint32, "bigint"),
        (t.is_uint64, "bigint"),
        (t.is_float16, "float"),
        (t.is_float32, "float"),
        (t.is_float64, "double"),
        (t.is_date, "date"),
        (t.is_timestamp, "timestamp"),
        (t.is_binary, "binary"),
        (t.is_large_binary, "binary"),
        (t.is_fixed_size_binary, "binary"),
    )
    for check, name in simple:
        if check(dtype):
            return name
    if t.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if t.is_list(dtype) or t.is_large_list(dtype):
        return f"array<{glue_type(dtype.value_type)}>"
    if t.is_map(dtype):
        return f"map<{glue_type(dtype.key_type)},{glue_type(dtype.item_type)}>"
    if t.is_struct(dtype):
        return "struct<" + ",".join(f"{f.name.lower()}:{glue_type(f.type)}" for f in dtype) + ">"
    raise TypeError(f"no Glue type for Arrow type {dtype}")


def glue_columns(schema: pa.Schema, exclude: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """Glue ``Columns`` for ``schema``: lower-case names (as the catalogue stores them), Hive types."""
    columns = []
    for f in schema:
        if f.name.lower() in exclude:
            continue
        try:
            columns.append({"Name": f.name.lower(), "Type": glue_type(f.type)})
        except TypeError as exc:
            raise TypeError(f"column {f.name!r}: {exc} (cast it before writing the Parquet)") from exc
    return columns
