#!/usr/bin/env bash
# Run a batchml job with the spark-submit that pyspark ships.
#
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py [job flags]
#   ./spark-submit.sh --master spark://host:7077 jobs/ingest.py --format netflix --input ... --output ...
#
# Local mode (default, --master local[*]): the job runs in one JVM with this checkout's .venv.
# Cluster mode (--master spark://...|yarn|k8s://...): lib/batchml is zipped to dist/batchml.zip and
# shipped with --py-files; third-party packages travel as a venv-pack archive (make dist-env makes
# dist/batchml-env.tar.gz) with --archives ...#environment and spark.pyspark.python=./environment/bin/python.
# Without that archive, executors use $PYSPARK_PYTHON (default: this .venv's python), which suits
# nodes that share this path (a single machine, or a shared mount).
#
# Environment: BATCHML_PYTHON (driver python), BATCHML_MASTER (default master),
# BATCHML_DRIVER_MEMORY (default 6g), BATCHML_ENV_ARCHIVE (venv-pack archive for cluster mode).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${BATCHML_PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
pyspark_home="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
submit="$pyspark_home/bin/spark-submit"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: spark-submit.sh: $*" >&2; exit 2; }
# value OPTION ARGS...: fail with one error line when OPTION has no value after it
value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

master="${BATCHML_MASTER:-local[*]}"
driver_memory="${BATCHML_DRIVER_MEMORY:-6g}"
opts=()
job=""
job_args=()
while [ $# -gt 0 ]; do
  if [ -z "$job" ]; then
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --master) value "$@"; master="$2"; shift 2 ;;
      --master=*) master="${1#--master=}"; shift ;;
      --driver-memory) value "$@"; driver_memory="$2"; shift 2 ;;
      --verbose|--supervise|-v) opts+=("$1"); shift ;;
      --*=*) opts+=("$1"); shift ;;
      --*) value "$@"; opts+=("$1" "$2"); shift 2 ;;
      *.py) job="$1"; shift ;;
      *) die "unexpected argument '$1' before the job file (usage: --help)" ;;
    esac
  else
    case "$1" in
      --master) value "$@"; master="$2"; shift 2 ;;
      --master=*) master="${1#--master=}"; shift ;;
      *) job_args+=("$1"); shift ;;
    esac
  fi
done
if [ -z "$job" ]; then
  usage >&2
  die "no job file given (jobs/<job>.py)"
fi
[ -f "$job" ] || die "job file '$job' does not exist"

export BATCHML_HOME="$here"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"   # TensorFlow's C++ start-up chatter
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$py}"
export PYSPARK_DRIVER_PYTHON="$py"
log4j_uri="file:${here// /%20}/conf/log4j2.properties"   # a URI: a space in the path is %20
args=(--master "$master" --driver-memory "$driver_memory"
      --conf "spark.pyspark.driver.python=$py"
      --conf "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=$log4j_uri -Duser.timezone=UTC"
      --conf "spark.executor.extraJavaOptions=-Duser.timezone=UTC"
      --conf "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL=$TF_CPP_MIN_LOG_LEVEL")

case "$master" in
  local*)
    export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
    ;;
  *)
    mkdir -p "$here/dist"
    "$py" - "$here/lib" "$here/dist/batchml.zip" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
    for d, dirs, files in os.walk(os.path.join(src, "batchml")):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(d, f)
                z.write(p, os.path.relpath(p, src))
os.replace(out + ".tmp", out)
PY
    args+=(--py-files "$here/dist/batchml.zip")
    archive="${BATCHML_ENV_ARCHIVE:-}"
    [ -z "$archive" ] && [ -f "$here/dist/batchml-env.tar.gz" ] && archive="$here/dist/batchml-env.tar.gz"
    if [ -n "$archive" ]; then
      args+=(--archives "$archive#environment" --conf spark.pyspark.python=./environment/bin/python)
    else
      args+=(--conf "spark.pyspark.python=$PYSPARK_PYTHON")
    fi
    ;;
esac

exec "$submit" "${args[@]}" "${opts[@]}" "$job" "${job_args[@]}"
