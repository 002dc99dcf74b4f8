#!/usr/bin/env bash
# The whole pipeline in local mode on generated sample data (called by `make demo`).
#   ./demo.sh [DIR]      (default data/demo; DEMO_RATINGS=N sets the Netflix dump size)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
D="${1:-data/demo}"
PY=.venv/bin/python
RATINGS="${DEMO_RATINGS:-200000}"
LOTR="The Lord of the Rings: The Fellowship of the Ring"
banner() { printf '\n==== %s ====\n' "$*"; }

banner "1. generate a Netflix Prize-format dump ($RATINGS ratings, users rate what they like, planted broken lines)"
$PY jobs/generate.py --format netflix --output "$D/raw/netflix" --ratings "$RATINGS" --plant 3 \
  --taste 1.5

banner "2. ingest it (probe pairs removed from training, kept as the test set)"
./spark-submit.sh jobs/ingest.py --format netflix --input "$D/raw/netflix" --output "$D/netflix" \
  --remove-probe --log-level WARNING > "$D/ingest.log"
$PY - "$D/netflix" <<'PY'
import json, sys
s = json.load(open(sys.argv[1] + "/_stats.json"))
print(f"dataset {sys.argv[1]}: {s['ratings']:,} ratings, {s['users']:,} users, {s['items']:,} items, "
      f"mean {s['mean_rating']:.3f}, dates {s['date_range'][0][:10]}..{s['date_range'][1][:10]}")
for name, c in s["files"].items():
    print(f"  {name:24s} lines {c['lines']:>9,}  accepted {c['accepted']:>9,}  rejected {c['rejected']:>4,}"
          f"  {c['rejected_by_reason'] or ''}")
print("  reconcile:", s["reconcile"])
PY

banner "3. other dump formats: Amazon reviews TSV (two categories) and MovieLens 1M layout"
$PY jobs/generate.py --format amazon-tsv --output "$D/raw/amazon" --ratings 20000 --plant 2 --gzip \
  --categories Books,Music > /dev/null
./spark-submit.sh jobs/ingest.py --format amazon-tsv --input "$D/raw/amazon" --output "$D/amazon" \
  --log-level WARNING | $PY -c "import json,sys; s=json.load(sys.stdin); print('amazon-tsv:', {k: s[k] for k in ('ratings','users','items','mean_rating','reconcile')})"
$PY jobs/generate.py --format movielens --variant dat --output "$D/raw/movielens" --ratings 20000 --plant 1 > /dev/null
./spark-submit.sh jobs/ingest.py --format movielens --input "$D/raw/movielens" --output "$D/movielens" \
  --log-level WARNING | $PY -c "import json,sys; s=json.load(sys.stdin); print('movielens:', {k: s[k] for k in ('ratings','users','items','mean_rating','reconcile')})"

banner "3b. review models on the Amazon dump: verified purchase (BER) and the rating from the words (RMSE)"
./spark-submit.sh jobs/reviews.py --dataset "$D/amazon" --output "$D/reviews_verified" --task verified \
  --log-level WARNING
./spark-submit.sh jobs/reviews.py --dataset "$D/amazon" --output "$D/reviews_rating" --task rating \
  --log-level WARNING

banner "4. item-item similarity (Jaccard top-20) and 'because you liked'"
./spark-submit.sh jobs/similarity.py --dataset "$D/netflix" --output "$D/similarity" \
  --show "$LOTR" --show-user 0 --log-level WARNING

banner "5. factorization: biases + ALS, RMSE on the probe set beside every baseline"
./spark-submit.sh jobs/factorize.py --dataset "$D/netflix" --output "$D/model" --test probe \
  --ground-truth "$D/raw/netflix/ground_truth" --rank 5,10,20 --reg 0.01,0.03 --log-level WARNING

banner "6. recommendations: top-10 for every user, popular list, ranking metrics"
./spark-submit.sh jobs/recommend.py --model "$D/model" --dataset "$D/netflix" --output "$D/recommend" \
  --log-level WARNING
USER_ID=$($PY -c "import pyarrow.parquet as pq; print(pq.read_table('$D/netflix/users').column('user_id')[0])")
echo "-- recommendations for user $USER_ID"
$PY -m batchml.query --model "$D/model" --dataset "$D/netflix" recommend "$USER_ID"
echo "-- a new user folded in (loves LOTR and Battlestar Galactica, hates wrestling): conf/foldin_example.csv"
$PY -m batchml.query --model "$D/model" --dataset "$D/netflix" foldin conf/foldin_example.csv
echo "-- similar to '$LOTR'"
$PY -m batchml.query --model "$D/model" --dataset "$D/netflix" --similar "$D/similarity" similar "$LOTR"

banner "7. tumor CNN: MRI-like phantoms -> shards -> 2 TensorFlow workers on Spark -> BER"
$PY -m batchml.synth.images "$D/raw/tumor" --n 150
./spark-submit.sh jobs/tumor_prepare.py --input "$D/raw/tumor" --output "$D/tumor_shards" --size 64 \
  --log-level WARNING
./spark-submit.sh jobs/tumor_train.py --data "$D/tumor_shards" --output "$D/tumor_model" --workers 2 \
  --epochs 8 --batch-size 16 --set tumor.architecture=small --log-level WARNING

banner "8. notebooks: the figures of every job (PNG under $D/figures)"
mkdir -p "$D/figures"
for nb in notebooks/[0-9]*.py; do
  log="$D/figures/$(basename "$nb" .py).log"
  DATASET="$D/netflix" SIMILARITY="$D/similarity" MODEL="$D/model" RECS="$D/recommend" \
    TUMOR="$D/tumor_model" REVIEWS_VERIFIED="$D/reviews_verified" REVIEWS_RATING="$D/reviews_rating" \
    FIGURES="$D/figures" $PY "$nb" > "$log"
  grep -E '^(wrote|note:)' "$log" || true
done

banner "done: outputs under $D"
echo "browse them (search, similar titles, a user's list, fold-in; Ctrl-C to stop):"
echo "  $PY -m batchml.web --dataset $D/netflix --model $D/model --similar $D/similarity --recs $D/recommend --host 127.0.0.1 --port 8050"
