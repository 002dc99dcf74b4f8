"""Co-occurrence similarity (Jaccard, cosine, Pearson) of items or users, and what uses it.

:mod:`~batchml.similarity.pair_sums` (one user bucket's partial XᵀX sums, numpy/scipy on Arrow),
:mod:`~batchml.similarity.item_blocks` (one item block's top-K against all items, for small data),
:mod:`~batchml.similarity.pipeline` (the Spark pipeline: ratings -> top-K table),
:mod:`~batchml.similarity.neighbours` (titles, "because you liked X", item-CF prediction and its
evaluation), :mod:`~batchml.similarity.job` (the job: read, compute, write, show).
"""
