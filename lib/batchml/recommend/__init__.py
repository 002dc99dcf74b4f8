"""Recommendations from a factor model: top-N per user, popular lists, fold-in of a new user.

For a model dir (layout in :mod:`batchml.model_dir`) the score of user u for item i is

    s(u, i) = μ + b_u + b_i + γ·p_u·q_i

with a missing bias or factor counting as 0 and γ read from the model dir as written.  Ranking uses
this unclipped score (clipping to the rating scale would tie every item above the top of the
scale); the ``score`` column holds it too.

Modules
-------
:mod:`~batchml.recommend.scoring`      candidate item arrays, the blocked top-N scorer (Spark and one user)
                                       and the block size from the memory budget
:mod:`~batchml.recommend.popular`      the popular list: shrunk mean and bias rankings (Spark, and streamed
                                       record batches for the query and web page)
:mod:`~batchml.recommend.item_lookup`  items by source id or title, with "did you mean" suggestions
:mod:`~batchml.recommend.foldin`       a new user's ratings file and the fold-in ridge regression
:mod:`~batchml.recommend.evaluation`   ranking metrics of the model, popular and random lists on held-out rows
:mod:`~batchml.recommend.job`          the recommendation job (``jobs/recommend.py``) and its text report
"""
