"""One row per post: each post's first copy among a DataFrame table's files, found with pyarrow.

df_pin, df_geo and df_user hold every row ever sent (a million after a long emulation) but only
as many posts as the database (11,153 in the sample): the emulator draws posts at random with
replacement, as the original did, and a request sent again after its answer was lost adds a few
more copies. A post's copies are the same row, so cleaning one copy is cleaning them all: the
cleaning rules (regular expressions over every text column, in Spark) run on one row per post,
and each post carries ``COPIES``, how many rows it had, for the counts of the raw rows.

Finding those rows is a pass over one integer column of the raw rows, which pyarrow makes in
native code in a fraction of a second per million, in memory that grows with the posts, not the
rows:

1. file after file, in the table's order, the keys of its rows, counted per key; the keys not
   seen in earlier files are the posts whose first copy is in this file;
2. then the whole rows of the few files that hold a first copy (posts drawn at random have all
   been drawn after a few thousand draws each file holds), and of those, each post's first row.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

COPIES = "_copies"  # the raw rows a post had


def one_row_per_post(files: Sequence[str], schema: pa.Schema, key: str) -> pa.Table:
    """The first row of each ``key`` among the parquet ``files`` (in order) read with
    ``schema``, and ``COPIES``: how many rows of the files have that key. A null key is a post
    of its own, as Spark's grouping makes it."""
    counts: list[pa.Table] = []
    holding: list[tuple[str, pa.Array]] = []  # a file and the keys first seen in it
    seen = pa.array([], schema.field(key).type)
    for path in files:
        keys = _read(path, schema, columns=[key])
        per_key = _counted(keys, key)
        counts.append(per_key)
        new = per_key[key].filter(pc.invert(pc.is_in(per_key[key], value_set=seen, skip_nulls=False)))
        if len(new):
            new = new.combine_chunks()
            holding.append((path, new))
            seen = pa.concat_arrays([seen, new])
    firsts = [
        _first_rows(_read(path, schema, filter=pc.is_in(pc.field(key), value_set=new, skip_nulls=False)), key)
        for path, new in holding
    ]
    posts = pa.concat_tables(firsts) if firsts else schema.empty_table()
    copies = pa.concat_tables(counts or [_counted(schema.empty_table().select([key]), key)])
    copies = copies.group_by(key).aggregate([("count_all", "sum")])
    at = pc.index_in(posts[key], value_set=copies[key], skip_nulls=False)
    return posts.append_column(COPIES, copies["count_all_sum"].take(at).cast(pa.int64()))


def _counted(keys: pa.Table, key: str) -> pa.Table:
    return keys.group_by(key).aggregate([([], "count_all")])


def _read(path: str, schema: pa.Schema, **scan) -> pa.Table:
    """One file's rows with the table's schema (a column a file lacks is null, as Spark reads it)."""
    return ds.dataset(path, schema=schema, format="parquet").to_table(**scan)


def _first_rows(rows: pa.Table, key: str) -> pa.Table:
    """The first row of each key, in the rows' order."""
    numbered = rows.append_column("_row", pa.array(range(rows.num_rows), pa.int64()))
    first = numbered.group_by(key, use_threads=False).aggregate([("_row", "min")])["_row_min"]
    return rows.take(first.take(pc.sort_indices(first)))
