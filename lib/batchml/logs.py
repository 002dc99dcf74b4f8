"""Logging set-up and the ``stage`` context manager every job uses to report progress."""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

LOG = logging.getLogger("batchml")
HEARTBEAT_SECONDS = 30.0  # a stage running longer logs its Spark tasks' progress this often


def setup_logging(level: str = "INFO") -> None:
    """Configure the ``batchml`` logger once (idempotent)."""
    if not any(getattr(h, "_batchml", False) for h in LOG.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%H:%M:%S"))
        handler._batchml = True  # type: ignore[attr-defined]
        LOG.addHandler(handler)
        LOG.propagate = False
    LOG.setLevel(level)


class Stage:
    """Handle yielded by :func:`stage`; ``rows`` and ``info`` are logged when the stage ends."""

    def __init__(self, name: str):
        self.name = name
        self.rows: int | None = None
        self.info: dict = {}
        self.seconds: float = 0.0

    def set_rows(self, n: int) -> int:
        self.rows = int(n)
        return self.rows


class Heartbeat:
    """While a stage runs, every ``every`` seconds log what its Spark stages have done (tasks
    completed of all, and an ETA for each from its rate since first seen), read from Spark's
    status tracker by a daemon thread.  Silent for stages shorter than ``every``."""

    def __init__(self, name: str, spark, every: float = HEARTBEAT_SECONDS):
        self.name, self.every, self.t0 = name, every, time.perf_counter()
        self.tracker = spark.sparkContext.statusTracker()
        self.first_seen: dict[int, tuple[float, int]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat {name}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _stage_line(self, sid: int, now: float) -> str | None:
        info = self.tracker.getStageInfo(sid)
        if info is None or not info.numTasks:
            return None
        seen_at, done_then = self.first_seen.setdefault(sid, (now, info.numCompletedTasks))
        done, total = info.numCompletedTasks, info.numTasks
        rate = (done - done_then) / (now - seen_at) if now > seen_at else 0.0
        eta = f", ETA {(total - done) / rate:.0f}s" if rate > 0 else ""
        return f"spark stage {sid} {done}/{total} tasks{eta}"

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            now = time.perf_counter()
            try:
                lines = [x for sid in sorted(self.tracker.getActiveStageIds())
                         if (x := self._stage_line(sid, now))]
            except Exception:  # the context is going away: nothing to report
                return
            LOG.info("stage %s: running %.0fs%s", self.name, now - self.t0,
                     "; " + "; ".join(lines) if lines else "")


@contextmanager
def stage(name: str, spark=None, timings: dict | None = None) -> Iterator[Stage]:
    """Log start, end, elapsed seconds and row count of a stage (and, with ``spark``, a
    :class:`Heartbeat` every :data:`HEARTBEAT_SECONDS` while it runs).

    Sets the Spark job description so the UI names the Spark jobs of the stage, and records the
    elapsed seconds in ``timings[name]`` when a dict is given.
    """
    st = Stage(name)
    beat = None
    if spark is not None:
        spark.sparkContext.setJobDescription(name)
        beat = Heartbeat(name, spark).__enter__()
    LOG.info("stage %s: start", name)
    t0 = time.perf_counter()
    try:
        yield st
    except BaseException:
        st.seconds = time.perf_counter() - t0
        LOG.error("stage %s: failed after %.1fs", name, st.seconds)
        raise
    finally:
        if spark is not None:
            beat.__exit__(None, None, None)
            spark.sparkContext.setJobDescription(None)
    st.seconds = time.perf_counter() - t0
    if timings is not None:
        timings[name] = round(st.seconds, 3)
    extra = "".join(f", {k}={v}" for k, v in st.info.items())
    rows = f", rows={st.rows:,}" if st.rows is not None else ""
    LOG.info("stage %s: done in %.1fs%s%s", name, st.seconds, rows, extra)


class Progress:
    """Progress of a loop of ``planned`` similar steps (grid candidates, rounds): each
    :meth:`step` logs ``what k/planned``, the step's seconds, the elapsed time and an ETA for the
    rest of the plan (the mean step so far times the steps left).  :meth:`plan_more` adds steps
    (a search extending past its grid); steps past the plan are logged as ``k (beyond the planned
    N)``, without an ETA."""

    def __init__(self, what: str, planned: int, logger: logging.Logger | None = None):
        self.what, self.planned, self.done = what, max(0, int(planned)), 0
        self.log = logger or LOG
        self.t0 = self.last = time.perf_counter()

    def plan_more(self, n: int = 1) -> None:
        """Add ``n`` steps to the plan (a search extending past its grid)."""
        self.planned += max(0, int(n))

    def step(self, detail: str = "") -> None:
        now = time.perf_counter()
        self.done += 1
        elapsed, took = now - self.t0, now - self.last
        self.last = now
        if self.done <= self.planned:
            left = (elapsed / self.done) * (self.planned - self.done)
            where = f"{self.done}/{self.planned}"
            eta = f", ETA {left:.0f}s" if self.done < self.planned else ""
        else:
            where, eta = f"{self.done} (beyond the planned {self.planned})", ""
        self.log.info("%s %s done in %.1fs (elapsed %.0fs%s)%s", self.what, where, took, elapsed,
                      eta, f": {detail}" if detail else "")
