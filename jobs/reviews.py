"""Review models on an ingested Amazon dataset: a verified-purchase classifier (BER) or the rating from the text (RMSE).

    ./spark-submit.sh jobs/reviews.py --dataset DIR --output DIR --task verified|rating
        [--ngrams 1,2] [--reg 0.001,0.01,0.1]

Spark ML pipelines end to end (tokenizer, stop words, n-grams, count vectorizer, IDF, the model);
train / validation / test by a hash of the review id; hyper-parameters and the decision threshold
chosen on validation only; the test split scored once, every baseline beside ours.  The output dir
holds ``metrics.json``, the fitted ``pipeline/`` (``PipelineModel.load``), ``term_weights/`` and the
test ``predictions/``.
"""
from __future__ import annotations

import sys

from batchml.cli import Flag, job_parser, run_job

FLAGS = (
    Flag("--task", "reviews.task", "what to predict", choices=("verified", "rating")),
    Flag("--ngrams", "reviews.ngrams", "longest n-gram, or a comma-separated grid of them"),
    Flag("--reg", "reviews.regs", "regularization, or a comma-separated grid"),
)


def build_parser():
    parser = job_parser(__doc__.strip().splitlines()[0], FLAGS)
    parser.add_argument("--dataset", required=True, help="dataset dir written by jobs/ingest.py from an Amazon dump")
    parser.add_argument("--output", required=True, help="output dir to write (replaced atomically)")
    return parser


def run(spark, cfg, args) -> int:
    from batchml.reviews.job import run_reviews
    from batchml.reviews.report import format_table

    print(format_table(run_reviews(spark, cfg, dataset=args.dataset, output=args.output)))
    return 0


def main(argv=None) -> int:
    return run_job(build_parser(), argv, run, app_name="batchml-reviews", inputs=("dataset",),
                   outputs=("output",))


if __name__ == "__main__":
    sys.exit(main())
