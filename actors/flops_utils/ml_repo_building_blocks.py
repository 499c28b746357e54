"""``load_dataset()``: the learner's local data as one Hugging Face ``datasets.Dataset``.

The data is every ``*.parquet`` file of every tag in ``FLOPS_DATA_TAGS`` under the data
directory (``/flops/data``, or ``FLOPS_DATA_DIR``), concatenated in tag order, then file
name order. Decision: the files are read with pyarrow into memory and wrapped in a
``Dataset`` directly instead of ``Dataset.from_parquet``, which would write an Arrow copy
into the Hugging Face cache of a container whose disk may be small or read-only. Columns keep
their Hugging Face features when the files carry them (files written by ``datasets``), so
``dataset.set_format("numpy")`` then ``dataset["image"]`` is an ndarray with ``datasets`` 3.x
(pinned: 4 and later return a lazy column there).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flops_utils.data_files import DATA_TAGS_ENV, DataError, data_dir, parse_tags, tag_files
from flops_utils.logging import logger

if TYPE_CHECKING:
    import datasets

__all__ = ["DataError", "load_dataset"]


def load_dataset(
    tags: list[str] | None = None, directory: str | os.PathLike[str] | None = None
) -> datasets.Dataset:
    """Return the learner's data; FLOps repositories call it without arguments.

    ``tags`` and ``directory`` default to ``FLOPS_DATA_TAGS`` and ``FLOPS_DATA_DIR``
    (``/flops/data``). Raises ``DataError`` naming the tag and the directory when a tag has
    no folder, no Parquet files, an unreadable file, or when the files do not fit together.
    """
    # Imported here: the aggregator imports data_manager.py (through model_manager.py)
    # but never loads data, and a saved model's code must import without this stack.
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = tags if tags is not None else parse_tags(os.environ.get(DATA_TAGS_ENV))
    root = data_dir(directory)
    tables: list[pa.Table] = []
    for tag in wanted:
        found = tag_files(tag, root)
        for path in found.files:
            try:
                tables.append(pq.read_table(path))
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"data tag {tag!r}: cannot read {path}: {exc}") from exc
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(
            f"data tags {', '.join(wanted)} in {root}: the Parquet files do not share one "
            f"schema: {exc}"
        ) from exc
    if table.num_rows == 0:
        raise DataError(f"data tags {', '.join(wanted)} in {root}: the Parquet files hold no rows")
    logger.info("loaded %d rows from data tags %s in %s", table.num_rows, ", ".join(wanted), root)
    return datasets.Dataset(table)
