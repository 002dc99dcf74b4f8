#!/usr/bin/env bash
# Spark GPU discovery script: prints {"name": "gpu", "addresses": ["0", "1", ...]} from nvidia-smi.
# Used by spark.{driver,executor}.resource.gpu.discoveryScript (see batchml.distributed.gpu_conf).
ids=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' | sed 's/.*/"&"/' | paste -sd, -)
echo "{\"name\": \"gpu\", \"addresses\": [${ids}]}"
