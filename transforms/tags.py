"""Machine tags as Cost Management sees them: the resource's own, and its resource group's
where the resource has none (tag inheritance).

Cost Management's tag inheritance (Learn: cost-management-billing/costs/enable-tag-inheritance)
applies a resource group's (and a subscription's) tags to the usage records of the resources in
it; when the resource has a tag of the same name, the resource's own value wins. Azure tag names
are case-insensitive (Learn: azure-resource-manager/management/tag-resources), so `costCenter`
on a VM hides `CostCenter` on its group. mdecost collects the resource group's tags beside each
machine's (`inventory.resource_group_tags`); subscription tags are not collected.

The lake keeps tags as JSON objects, as Azure sends them; DuckDB reads those into maps, one
query per batch of machines, never a Python loop per machine.
"""

from __future__ import annotations

from typing import Final

import duckdb
import polars as pl

# The warehouse stores `machines.tags` as a DuckDB MAP(VARCHAR, VARCHAR); polars and Arrow carry
# a map as a list of key/value structs.
TAG_DTYPE: Final = pl.List(pl.Struct({"key": pl.String(), "value": pl.String()}))
UNTAGGED: Final = "missing"

_MERGE_SQL: Final = """
WITH parsed AS (
    SELECT row_number() OVER () AS position,
           coalesce(CAST(CAST(own AS JSON) AS MAP(VARCHAR, VARCHAR)), MAP()) AS own,
           coalesce(CAST(CAST(inherited AS JSON) AS MAP(VARCHAR, VARCHAR)), MAP()) AS inherited
    FROM batch
)
SELECT map_entries(map_concat(
           map_from_entries(list_filter(
               map_entries(inherited),
               lambda entry: NOT list_contains(
                   list_transform(map_keys(own), lambda name: lower(name)), lower(entry.key)))),
           own)) AS tags
FROM parsed ORDER BY position
"""


def _merged(pairs: pl.Series) -> pl.Series:
    """One batch of (own, inherited) JSON objects -> the effective tags of each row."""
    batch = pairs.struct.unnest().rename(
        dict(zip(pairs.struct.fields, ("own", "inherited"), strict=True))
    )
    with duckdb.connect() as con:
        con.register("batch", batch.to_arrow())
        merged = con.sql(_MERGE_SQL).to_arrow_table()
    return pl.Series("tags", merged.column("tags").combine_chunks(), dtype=TAG_DTYPE)


def effective_tags(own: str, inherited: str) -> pl.Expr:
    """The machine's tags (JSON object column `own`) with its resource group's (`inherited`)
    added for every name the machine lacks, compared without case; null JSON is no tags."""
    return (
        pl.struct(pl.col(own).cast(pl.String), pl.col(inherited).cast(pl.String))
        .map_batches(_merged, return_dtype=TAG_DTYPE, is_elementwise=True)
        .alias("tags")
    )


def tag_value(name: str) -> pl.Expr:
    """The value of tag `name` in `tags` (names compared without case, as Azure does); null
    when the machine has no such tag."""
    wanted = name.lower()
    return (
        pl.col("tags")
        .list.eval(
            pl.element()
            .struct.field("value")
            .filter(pl.element().struct.field("key").str.to_lowercase() == wanted)
        )
        .list.first()
    )
