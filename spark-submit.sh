#!/usr/bin/env bash
# Run a batchml job with the spark-submit that pyspark ships.
#
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py [job flags]
#   ./spark-submit.sh --master spark://host:7077 jobs/ingest.py --format netflix --input ... --output ...
#
# Local mode (default, --master local[*]): the job runs in one JVM with this checkout's .venv.
# Cluster mode (--master spark://...|yarn|k8s://...): lib/batchml is zipped to dist/batchml.zip and
# shipped with --py-files; the Python environment travels as a venv-pack archive made by
# `make dist-env` (dist/batchml-tumor-env.tar.gz for jobs/tumor_*.py, dist/batchml-env.tar.gz for
# the others, which carries no TensorFlow) with --archives ARCHIVE#environment, and executors run
# ./environment/bin/python. A missing archive is an error. With --deploy-mode cluster the driver
# runs on a node too and uses ./environment/bin/python as well.
#
# Environment: BATCHML_PYTHON (driver python), BATCHML_MASTER (default master),
# BATCHML_CDS_ARCHIVE (the driver's class-data sharing archive, default .venv/spark-cds.jsa; none: off),
# BATCHML_DRIVER_MEMORY (default 6g), BATCHML_ENV_ARCHIVE (another archive, or `none`: ship none,
# executors run $PYSPARK_PYTHON, default this .venv's python: for nodes that share this path or an
# image that holds the environment).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${BATCHML_PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
pyspark_home="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
submit="$pyspark_home/bin/spark-submit"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: spark-submit.sh: $*" >&2; exit 2; }
# value OPTION ARGS...: fail with one error line when OPTION has no value after it
value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

master="${BATCHML_MASTER:-local[*]}"
deploy_mode=client
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
      --deploy-mode) value "$@"; deploy_mode="$2"; opts+=("$1" "$2"); shift 2 ;;
      --deploy-mode=*) deploy_mode="${1#--deploy-mode=}"; opts+=("$1"); shift ;;
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

# pick_archive: the environment archive for this job (BATCHML_ENV_ARCHIVE, else by job family)
pick_archive() {
  if [ -n "${BATCHML_ENV_ARCHIVE:-}" ]; then
    archive="$BATCHML_ENV_ARCHIVE"
  else
    case "$(basename "$job")" in
      tumor_*) archive="$here/dist/batchml-tumor-env.tar.gz" ;;
      *) archive="$here/dist/batchml-env.tar.gz" ;;
    esac
  fi
  [ "$archive" = none ] && return 0
  [ -f "$archive" ] || die "environment archive '$archive' does not exist: run 'make dist-env' (or set BATCHML_ENV_ARCHIVE=none where every node sees $PYSPARK_PYTHON)"
  if [ -z "${BATCHML_ENV_ARCHIVE:-}" ] && [ "$archive" -ot "$here/pyproject.toml" ]; then
    echo "warning: spark-submit.sh: $archive is older than pyproject.toml: run 'make dist-env'" >&2
  fi
}

# zip_lib: lib/batchml -> dist/batchml.zip (the job code, shipped with --py-files)
zip_lib() {
  mkdir -p "$here/dist"
  "$py" - "$here/lib" "$here/dist/batchml.zip" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
tmp = f"{out}.tmp{os.getpid()}"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    for d, dirs, files in os.walk(os.path.join(src, "batchml")):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(d, f)
                z.write(p, os.path.relpath(p, src))
os.replace(tmp, out)
PY
}

export BATCHML_HOME="$here"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"   # TensorFlow's C++ start-up chatter
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$py}"
log4j_uri="file:${here// /%20}/conf/log4j2.properties"   # a URI: a space in the path is %20
driver_java_opts="-Dlog4j2.configurationFile=$log4j_uri -Duser.timezone=UTC"
# Class-data sharing (JDK AppCDS): `make venv` records the classes a driver loads into
# .venv/spark-cds.jsa (BATCHML_CDS_DUMP=FILE ./spark-submit.sh jobs/warmup.py); a driver started
# here maps them instead of loading ~10k classes: an empty job 8.5 s -> 5.2 s on 2 cores. The JVM
# ignores an archive made by another JDK or for other jars. BATCHML_CDS_ARCHIVE: another file, or
# `none`.
cds="${BATCHML_CDS_ARCHIVE:-$here/.venv/spark-cds.jsa}"
quiet_cds="-Xlog:cds=off -Xlog:cds+dynamic=off"
if [ -n "${BATCHML_CDS_DUMP:-}" ]; then
  driver_java_opts+=" -XX:ArchiveClassesAtExit=\"$BATCHML_CDS_DUMP\" $quiet_cds"
elif [ "$cds" != none ] && [ -s "$cds" ]; then
  driver_java_opts+=" -XX:SharedArchiveFile=\"$cds\" $quiet_cds"
fi
args=(--master "$master" --driver-memory "$driver_memory"
      --conf "spark.executor.extraJavaOptions=-Duser.timezone=UTC"
      --conf "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL=$TF_CPP_MIN_LOG_LEVEL")

case "$master" in
  local*)
    export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
    ;;
  *)
    pick_archive
    zip_lib
    args+=(--py-files "$here/dist/batchml.zip")
    if [ "$archive" = none ]; then
      node_python="$PYSPARK_PYTHON"
    else
      node_python=./environment/bin/python
      args+=(--archives "$archive#environment")
    fi
    args+=(--conf "spark.pyspark.python=$node_python")
    if [ "$deploy_mode" = cluster ]; then
      # the driver runs on a node: its Python is the nodes' one, and this checkout's log4j file
      # is not there
      py="$node_python"
      driver_java_opts="-Duser.timezone=UTC"
      export PYSPARK_PYTHON="$node_python"
    fi
    ;;
esac
export PYSPARK_DRIVER_PYTHON="$py"
args+=(--conf "spark.pyspark.driver.python=$py"
       --conf "spark.driver.extraJavaOptions=$driver_java_opts")

exec "$submit" "${args[@]}" "${opts[@]}" "$job" "${job_args[@]}"
