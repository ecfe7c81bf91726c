"""Pure transformations from the raw lake to the warehouse contract.

Everything in this package takes and returns polars LazyFrames (or DuckDB relations) and
does no I/O, so it can be tested without Prefect or Azure.
"""
