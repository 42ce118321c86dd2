"""Reads a tsrelay Parquet archive with DuckDB or pyarrow; prints one JSON row a line.

usage: read_parquet.py duckdb|pyarrow ROOT [COLUMN...]
Each row: {"metric", "date", "hour", "ts", "value", "labels": {...}, "columns": {...}, "file"}.
"""
import json
import sys


def rows_duckdb(root, columns):
    import duckdb

    extra = "".join(f", \"{c}\"" for c in columns)
    q = (
        "SELECT metric, CAST(date AS VARCHAR), CAST(hour AS VARCHAR), epoch_ms(timestamp), value, "
        f"map_keys(labels), map_values(labels), filename{extra} "
        f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false, filename = true)"
    )
    for r in duckdb.sql(q).fetchall():
        yield {
            "metric": r[0], "date": r[1], "hour": r[2], "ts": r[3], "value": r[4],
            "labels": dict(zip(r[5], r[6])), "file": r[7],
            "columns": {c: r[8 + i] for i, c in enumerate(columns)},
        }


def rows_pyarrow(root, columns):
    import pathlib

    import pyarrow.parquet as pq

    for path in sorted(pathlib.Path(root).glob("metric=*/date=*/hour=*/*.parquet")):
        parts = {p.split("=", 1)[0]: p.split("=", 1)[1] for p in path.parent.relative_to(root).parts}
        t = pq.read_table(path)
        ts = t.column("timestamp").cast("int64").to_pylist()
        values = t.column("value").to_pylist()
        labels = t.column("labels").to_pylist()
        cols = {c: t.column(c).to_pylist() for c in columns}
        for i in range(t.num_rows):
            yield {
                "metric": parts["metric"], "date": parts["date"], "hour": parts["hour"], "ts": ts[i],
                "value": values[i], "labels": dict(labels[i]), "file": str(path),
                "columns": {c: cols[c][i] for c in columns},
            }


def main():
    mode, root, columns = sys.argv[1], sys.argv[2], sys.argv[3:]
    reader = rows_duckdb if mode == "duckdb" else rows_pyarrow
    for row in reader(root, columns):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
