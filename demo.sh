#!/usr/bin/env bash
# The whole pipeline in local mode on generated sample data (called by `make demo`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
D="${1:-data/demo}"
PY=.venv/bin/python
RATINGS="${DEMO_RATINGS:-200000}"

echo "== generate a Netflix-format dump ($RATINGS ratings, with planted broken lines) =="
$PY jobs/generate.py --format netflix --output "$D/raw/netflix" --ratings "$RATINGS" --plant 3

echo "== ingest it =="
./spark-submit.sh jobs/ingest.py --format netflix --input "$D/raw/netflix" --output "$D/netflix" --remove-probe
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
