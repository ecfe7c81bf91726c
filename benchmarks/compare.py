"""`python -m benchmarks.compare A.duckdb B.duckdb`: do two warehouses hold the same rows?

An optimisation of the build must not change a figure: build the benchmark lake before and
after it and compare. Every table of A is compared with B's as multisets of rows (EXCEPT ALL
both ways: row order is not part of the warehouse), to the last bit, leaving out what differs
between any two builds (`build_info.built_at`) and the build's own records (`build_state`: an
incremental build keeps the chunks of the build it copies from). Exits 1 when they differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

# Columns that differ between two builds of one lake by design.
PER_BUILD = {("build_info", "built_at")}


def differences(first: Path, second: Path) -> dict[str, tuple[int, int, int]]:
    """Per table of `first`: (rows, rows only in first, rows only in second)."""
    con = duckdb.connect()
    for alias, path in (("a", first), ("b", second)):
        quoted = str(path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS {alias} (READ_ONLY)")
    tables_of = {
        alias: [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = $db "
                "AND schema_name = 'main' ORDER BY 1",
                {"db": alias},
            ).fetchall()
        ]
        for alias in ("a", "b")
    }
    if tables_of["a"] != tables_of["b"]:
        raise SystemExit(f"different tables: {tables_of['a']} against {tables_of['b']}")
    found = {}
    for table in tables_of["a"]:
        columns = ", ".join(
            f'"{column}"'
            for (column,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'a' "
                "AND schema_name = 'main' AND table_name = $table ORDER BY column_index",
                {"table": table},
            ).fetchall()
            if (table, column) not in PER_BUILD
        )

        def count(sql: str) -> int:
            (rows,) = con.execute(sql).fetchall()[0]
            return int(rows)

        apart = [
            count(
                f'SELECT count(*) FROM (SELECT {columns} FROM {left}."{table}" '
                f'EXCEPT ALL SELECT {columns} FROM {right}."{table}")'
            )
            for left, right in (("a", "b"), ("b", "a"))
        ]
        found[table] = (count(f'SELECT count(*) FROM a."{table}"'), apart[0], apart[1])
    return found


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.compare A.duckdb B.duckdb")
    found = differences(Path(sys.argv[1]), Path(sys.argv[2]))
    for table, (rows, only_first, only_second) in found.items():
        verdict = "same" if only_first == only_second == 0 else "DIFFERENT"
        print(f"{table}: {rows:,} rows, {verdict} ({only_first} / {only_second} rows apart)")
    same = all(only_first == only_second == 0 for _, only_first, only_second in found.values())
    print("IDENTICAL" if same else "DIFFERENT")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
