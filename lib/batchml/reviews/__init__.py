"""Review models on the Amazon dumps' ``reviews`` table, with Spark ML pipelines end to end.

* :mod:`~batchml.reviews.split`    train / validation / test by a hash of the review id (deterministic)
* :mod:`~batchml.reviews.features` the pipeline stages: inputs from the table's columns, tokenizer,
  stop words, n-grams, count vectorizer, IDF, assembler
* :mod:`~batchml.reviews.fitting`  fitting a model over a fitted featurizer, the grid on validation
* :mod:`~batchml.reviews.verified` the verified-purchase classifier and its baseline (its BER, AUC and
  threshold come from :mod:`batchml.binary_metrics`, shared with the tumor CNN)
* :mod:`~batchml.reviews.rating`   the rating regression and its baselines
* :mod:`~batchml.reviews.job`      the job's stages: read, split, the task, the outputs
* :mod:`~batchml.reviews.report`   the printed table
"""
