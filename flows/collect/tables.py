"""Polars frames -> Arrow tables typed by a lake schema, for the lake writer to check and write."""

from __future__ import annotations

import polars as pl
import pyarrow as pa


def arrow_table(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """`frame`'s columns in `schema`'s order, cast to its types (polars' large strings become the
    schema's strings). Nullability is left to `transforms.schemas.conform`, which names the
    dataset and column when a required value is missing."""
    return pa.table({field.name: frame[field.name].to_arrow().cast(field.type) for field in schema})
