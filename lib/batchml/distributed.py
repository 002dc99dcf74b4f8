"""A generic Spark barrier runner for multi-worker TensorFlow.

One Spark barrier stage with one task per worker.  Every task picks a free ``host:port``, the tasks
exchange them with :meth:`BarrierTaskContext.allGather`, each sets ``TF_CONFIG`` (worker ``i`` of the
gathered list; worker 0 is the chief) and calls the user's training function, which builds a
``tf.distribute.MultiWorkerMirroredStrategy`` (see :func:`make_strategy`).  The function receives a
:class:`WorkerContext` holding the task's rows (its shard) and helpers to exchange small values with
the other workers; whatever it returns comes back to the driver, in worker order.

Python workers are reused between Spark tasks, so TensorFlow's eager context is reset at the start of
every task (:func:`reset_tensorflow`): a second job in the same session gets a fresh collective
configuration.

Slots: a barrier stage needs all its tasks running at once.  Spark re-checks for free slots
``spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures`` times (every ``...interval``) before it
gives up (:func:`batchml.spark.build_session` lowers both so that it fails in seconds);
:func:`check_slots` raises a clear error at once where the number of slots can be known from the
configuration.

GPUs: with ``use_gpu`` each task must have been given one GPU by Spark's resource scheduling
(``spark.task.resource.gpu.amount=1`` with ``spark.executor.resource.gpu.amount`` and a discovery
script on a cluster, or ``spark.driver.resource.gpu.amount`` + ``...discoveryScript`` in local mode;
:func:`gpu_conf`).  The task's GPU addresses go into ``CUDA_VISIBLE_DEVICES`` before TensorFlow
starts.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from pyspark import BarrierTaskContext, RDD
from pyspark.sql import SparkSession

from batchml.errors import JobError

LOG = logging.getLogger("batchml.distributed")

TASK_GPU = "spark.task.resource.gpu.amount"


class DistributedError(JobError):
    """The barrier stage cannot run as asked (too few slots, no GPU, a worker failed)."""


def gpu_conf(local: bool, discovery_script: str | None = None, gpus: int = 1) -> dict[str, str]:
    """Spark settings giving each task one GPU.

    Parameters
    ----------
    local : bool
        Local mode: the driver owns the GPUs (``spark.driver.resource.gpu.*``); on a cluster the
        executors do (``spark.executor.resource.gpu.*``).
    discovery_script : str, optional
        Script printing ``{"name": "gpu", "addresses": ["0", ...]}``; default
        ``batchml/tumor/gpu_discovery.sh`` (uses ``nvidia-smi``).
    gpus : int
        GPUs per executor (or of the driver in local mode).
    """
    if discovery_script is None:
        discovery_script = os.path.join(os.path.dirname(__file__), "tumor", "gpu_discovery.sh")
    owner = "driver" if local else "executor"
    return {f"spark.{owner}.resource.gpu.amount": str(gpus),
            f"spark.{owner}.resource.gpu.discoveryScript": discovery_script,
            TASK_GPU: "1"}


def total_slots(spark: SparkSession) -> int | None:
    """Task slots of the application as far as its configuration tells, else ``None``."""
    sc = spark.sparkContext
    conf = sc.getConf()
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    master = sc.master
    m = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master)
    if m:
        g = m.group(1)
        cores = 1 if g is None else (os.cpu_count() or 1) if g == "*" else int(g)
        return max(0, cores // task_cpus)
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        return None
    inst, cores = conf.get("spark.executor.instances"), conf.get("spark.executor.cores")
    if inst and cores:
        return int(inst) * (int(cores) // task_cpus)
    return None


def check_slots(spark: SparkSession, workers: int, use_gpu: bool = False) -> None:
    """Raise :class:`DistributedError` when the session cannot run ``workers`` barrier tasks at once
    (or, with ``use_gpu``, gives tasks no GPU)."""
    slots = total_slots(spark)
    if slots is not None and workers > slots:
        raise DistributedError(
            f"{workers} workers need {workers} concurrent task slots but this Spark application has "
            f"{slots} ({spark.sparkContext.master}, spark.task.cpus="
            f"{spark.sparkContext.getConf().get('spark.task.cpus', '1')}): lower the number of workers "
            f"or add executors/cores")
    if use_gpu:
        amount = spark.sparkContext.getConf().get(TASK_GPU)
        if not amount:
            local = spark.sparkContext.master.startswith("local")
            hint = " ".join(f"{k}={v}" for k, v in gpu_conf(local).items())
            raise DistributedError(
                f"use_gpu needs Spark GPU scheduling, set when the session starts: {hint} "
                "(conf spark.extra, or --conf with spark-submit)")


@dataclass
class WorkerContext:
    """What a worker's training function gets: its rank, the worker count, its shard of rows and a
    way to exchange small JSON-able values with the other workers."""

    rank: int
    num_workers: int
    rows: Iterator[Any]
    cluster: list[str]
    threads: int
    gpus: list[str] = field(default_factory=list)
    _ctx: Any = None

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def all_gather(self, value: Any) -> list[Any]:
        """Every worker's ``value`` (JSON-able), in rank order; a barrier for all workers."""
        return [json.loads(v) for v in self._ctx.allGather(json.dumps(value))]

    def barrier(self) -> None:
        self._ctx.barrier()


def free_port(host: str, port_range: str = "0", rng: random.Random | None = None) -> int:
    """A port on ``host`` that is free now: any (``"0"``) or one in ``"LOW-HIGH"``."""
    bind = "" if host in ("localhost", "127.0.0.1") else host
    if port_range.strip() == "0":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((bind or "127.0.0.1", 0))
            return s.getsockname()[1]
    low, high = (int(p) for p in port_range.split("-"))
    ports = list(range(low, high + 1))
    (rng or random.Random()).shuffle(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((bind or "127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DistributedError(f"no free port in {port_range} on {host}")


def reset_tensorflow(threads: int = 0) -> None:
    """Give this (possibly reused) Python worker a fresh TensorFlow eager context, so a new
    ``MultiWorkerMirroredStrategy`` can configure its collectives, and set the thread pools."""
    import keras
    import tensorflow as tf
    from tensorflow.python.eager import context  # no public API resets the context

    keras.backend.clear_session()
    context._reset_context()  # noqa: SLF001
    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


def make_strategy():
    """The ``MultiWorkerMirroredStrategy`` of the cluster in ``TF_CONFIG`` (ring all-reduce on CPU,
    NCCL where every worker has a GPU)."""
    import tensorflow as tf
    options = None
    if tf.config.list_physical_devices("GPU"):
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.NCCL)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


_WORKER_LOG_HANDLER = logging.StreamHandler()


def _worker_logging(rank: int) -> None:
    """Send the ``batchml`` loggers' INFO lines of this Python worker to its stderr (the driver's
    console in local mode, the executor log on a cluster), tagged with the worker's rank."""
    _WORKER_LOG_HANDLER.setFormatter(logging.Formatter(
        f"%(asctime)s INFO worker {rank}: %(message)s", "%H:%M:%S"))
    log = logging.getLogger("batchml")
    if _WORKER_LOG_HANDLER not in log.handlers:
        log.addHandler(_WORKER_LOG_HANDLER)
        log.propagate = False  # a root handler of the worker would print each line twice
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)


def _host_of(ctx: BarrierTaskContext) -> str:
    if os.environ.get("SPARK_LOCAL_IP"):
        return os.environ["SPARK_LOCAL_IP"]
    infos = ctx.getTaskInfos()
    address = infos[ctx.partitionId()].address
    return address.rsplit(":", 1)[0] if address else socket.gethostbyname(socket.gethostname())


def _task(fn: Callable[[WorkerContext], Any], port_range: str, threads: int, use_gpu: bool):
    def run(rows: Iterable[Any]) -> Iterator[str]:
        t_start = time.perf_counter()
        ctx = BarrierTaskContext.get()
        rank, n = ctx.partitionId(), len(ctx.getTaskInfos())
        _worker_logging(rank)
        log = logging.getLogger("batchml.distributed")
        gpus: list[str] = []
        if use_gpu:
            res = ctx.resources().get("gpu")
            if res is None or not res.addresses:
                raise DistributedError(f"worker {rank} was given no GPU by Spark")
            gpus = list(res.addresses)
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        host = _host_of(ctx)
        port = free_port(host, port_range, random.Random(rank * 7919 + os.getpid()))
        cluster = [json.loads(a)["addr"] for a in ctx.allGather(json.dumps({"addr": f"{host}:{port}"}))]
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": cluster},
                                              "task": {"type": "worker", "index": rank}})
        t_gathered = time.perf_counter()
        reset_tensorflow(threads)
        log.info("worker %d/%d at %s (threads=%d, gpus=%s)", rank, n, cluster[rank], threads, gpus)
        wctx = WorkerContext(rank=rank, num_workers=n, rows=iter(rows), cluster=cluster,
                             threads=threads, gpus=gpus, _ctx=ctx)
        t0 = time.perf_counter()
        result = fn(wctx)
        ctx.barrier()
        yield json.dumps({"rank": rank, "seconds": time.perf_counter() - t0, "result": result,
                          "startup": {"gather_s": t_gathered - t_start, "tensorflow_s": t0 - t_gathered}})
    return run


def run_on_barrier(spark: SparkSession, fn: Callable[[WorkerContext], Any], workers: int,
                   data: RDD | None = None, *, port_range: str = "0", threads: int = 0,
                   use_gpu: bool = False) -> list[Any]:
    """Run ``fn(WorkerContext)`` on ``workers`` barrier tasks at once; return their results by rank.

    Parameters
    ----------
    spark : SparkSession
    fn : callable
        Picklable training function, called once per worker after ``TF_CONFIG`` is set; returns a
        JSON-able value.
    workers : int
        Number of tasks (TensorFlow workers).
    data : RDD, optional
        Rows to train on, with exactly ``workers`` partitions: partition ``i`` is worker ``i``'s shard.
    port_range : str
        ``"0"`` (any free port) or ``"LOW-HIGH"``.
    threads : int
        TensorFlow threads per worker; 0: cores / workers in local mode, else ``spark.task.cpus``.
    use_gpu : bool
        Give each worker the GPU Spark assigned to its task.
    """
    check_slots(spark, workers, use_gpu)
    sc = spark.sparkContext
    if data is None:
        data = sc.parallelize(range(workers), workers)
    if data.getNumPartitions() != workers:
        raise DistributedError(f"the data has {data.getNumPartitions()} partitions, expected one per "
                               f"worker ({workers})")
    if threads <= 0:
        slots = total_slots(spark)
        task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
        if sc.master.startswith("local") and slots:
            threads = max(1, slots * task_cpus // workers)
        else:
            threads = int(sc.getConf().get("spark.task.cpus", "1"))
    LOG.info("barrier stage: %d workers, %d TensorFlow threads each, gpu=%s", workers, threads, use_gpu)
    try:
        out = data.barrier().mapPartitions(_task(fn, port_range, threads, use_gpu)).collect()
    except Exception as exc:  # Py4JJavaError carries Spark's reason; keep its first line readable
        text = str(exc)
        if "requires more slots than the total number of slots" in text:
            raise DistributedError(f"{workers} workers need {workers} free task slots at once; Spark "
                                   "reports too few slots in the cluster") from None
        raise
    results = sorted((json.loads(o) for o in out), key=lambda r: r["rank"])
    LOG.info("barrier stage done: %s", ", ".join(
        f"worker {r['rank']} {r['seconds']:.1f}s (start-up: {r['startup']['gather_s']:.1f}s to meet, "
        f"{r['startup']['tensorflow_s']:.1f}s to load TensorFlow)" for r in results))
    return [r["result"] for r in results]
