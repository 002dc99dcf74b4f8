"""The one SparkSession for the whole test run (local[2], UI off, few shuffle partitions)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def test_config():
    from batchml.config import build_config
    return build_config({
        "spark": {"master": "local[2]", "app_name": "batchml-tests", "shuffle_partitions": 4,
                  "driver_memory": "2g", "ui": False, "log_level": "ERROR",
                  "checkpoint_dir": str(ROOT / "data" / "test-checkpoints"),
                  "extra": {"spark.default.parallelism": "4",
                            "spark.sql.adaptive.coalescePartitions.enabled": "false"}},
    })


@pytest.fixture(scope="session")
def spark(test_config):
    from batchml.spark import build_session
    session = build_session(test_config.spark)
    yield session
    session.stop()
