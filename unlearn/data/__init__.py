"""Datasets: forget / retain / holdout splits in parquet, local or on S3."""

from unlearn.data.dataset import (
    COLUMNS,
    SCHEMA,
    Dataset,
    DatasetInfo,
    check_disjoint,
    content_hash,
    to_table,
    validate_table,
    write_dataset,
)
from unlearn.errors import DataError

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "check_disjoint",
    "content_hash",
    "to_table",
    "validate_table",
    "write_dataset",
]
