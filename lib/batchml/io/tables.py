"""The dataset tables in their declared schemas (:mod:`batchml.schema`)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T


def conform(df: DataFrame, schema: T.StructType, optional: T.StructType | None = None) -> DataFrame:
    """``df`` as the table ``schema`` declares it: its columns in the schema's order, each cast to
    the declared type, then those ``optional`` columns that ``df`` has (cast likewise); other
    columns are dropped.

    Returns
    -------
    DataFrame
        The fields of ``schema``, then the fields of ``optional`` present in ``df``.
    """
    fields = list(schema.fields) + [f for f in (optional.fields if optional else []) if f.name in df.columns]
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in fields])
