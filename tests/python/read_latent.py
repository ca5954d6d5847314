"""Reads a latent table the ways our users do and checks what they get.

    python read_latent.py TABLE DIM ROWS FIRST_VALUES_JSON

TABLE is a Parquet file or a folder of shards (read as one table, the shards in name order).

Three routes: Polars' native reader, pyarrow, and Polars through pyarrow (the route on
which a Polars bug once returned four times the rows of an Array(Float32, 2) column).
Each must give ROWS rows, the embedding as a fixed-size list / Array of DIM float32, and
the first row's embedding equal to FIRST_VALUES_JSON. Prints one line per route and exits
non-zero on the first mismatch.
"""

import json
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def check(route, rows, dtype_ok, first, expected_rows, expected_first):
    if rows != expected_rows:
        sys.exit(f"{route}: {rows} rows, expected {expected_rows}")
    if not dtype_ok:
        sys.exit(f"{route}: embedding has the wrong type")
    # float32 values printed shortest by Rust and read back as Python floats: equal to
    # within float32 rounding (a fixed number of decimals would flip at rounding edges).
    close = len(first) == len(expected_first) and all(
        abs(float(a) - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(first, expected_first))
    if not close:
        sys.exit(f"{route}: first embedding {list(first)[:4]}..., expected {expected_first[:4]}...")
    print(f"{route}: ok ({rows} rows)")


def main():
    path, dim, expected_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    expected_first = json.loads(sys.argv[4])

    # Polars reads a folder through a glob; pyarrow reads it as a dataset.
    polars_path = f"{path}/*.parquet" if Path(path).is_dir() else path
    native = pl.read_parquet(polars_path)
    check("polars native", native.height, native.schema["embedding"] == pl.Array(pl.Float32, dim),
          native["embedding"][0].to_list(), expected_rows, expected_first)

    table = pq.read_table(path)
    arrow_type = table.schema.field("embedding").type
    check("pyarrow", table.num_rows,
          arrow_type == pa.list_(pa.field("item", pa.float32(), nullable=False), dim),
          table.column("embedding")[0].as_py(), expected_rows, expected_first)

    via_arrow = pl.from_arrow(table)
    check("polars via pyarrow", via_arrow.height,
          via_arrow.schema["embedding"] == pl.Array(pl.Float32, dim),
          via_arrow["embedding"][0].to_list(), expected_rows, expected_first)

    numpy = native.filter(pl.col("split") == "train")["embedding"].to_numpy()
    if numpy.shape[1:] != (dim,) or str(numpy.dtype) != "float32":
        sys.exit(f"to_numpy: shape {numpy.shape} dtype {numpy.dtype}")
    print(f"to_numpy: ok {numpy.shape}")


if __name__ == "__main__":
    main()
