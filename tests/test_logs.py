"""Progress people can see: a long stage's heartbeat reports its Spark tasks while they run."""
from __future__ import annotations

import logging
import re

from batchml.logs import Heartbeat


def test_heartbeat_reports_the_running_spark_stage(spark, caplog):
    # 8 tasks of 400 ms each (a JVM sleep: no Python worker code) on 2 cores: about 1.6 s
    slow = spark.range(0, 8, numPartitions=8).selectExpr(
        "reflect('java.lang.Thread', 'sleep', cast(400 as bigint)) AS s")
    with caplog.at_level(logging.INFO, logger="batchml"):
        with Heartbeat("slow stage", spark, every=0.25):
            assert len(slow.collect()) == 8
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage slow stage")]
    assert lines, "no heartbeat while the stage ran"
    tasks = [m for line in lines for m in re.findall(r"spark stage \d+ (\d+)/(\d+) tasks", line)]
    assert tasks and all(0 <= int(done) <= int(total) for done, total in tasks)
    assert any(int(total) == 8 for _, total in tasks)
    assert any("ETA" in line for line in lines)


def test_heartbeat_is_silent_for_a_short_stage(spark, caplog):
    with caplog.at_level(logging.INFO, logger="batchml"):
        with Heartbeat("quick stage", spark, every=30):
            spark.range(3).count()
    assert not [r for r in caplog.records if "quick stage" in r.getMessage()]
