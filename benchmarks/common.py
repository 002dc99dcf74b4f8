"""Helpers shared by the benchmark scripts: timing, peak memory of a process tree, machine load."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (driver Python, the JVM, workers)."""
    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Measured:
    """One command's run: wall seconds, peak RSS of its process tree, exit code, output (empty
    when it went to a log file) and the machine's 1-minute load average at start, end, and the
    mean and max of the samples taken while it ran."""

    cmd: list[str]
    wall: float
    peak_rss: int
    returncode: int
    output: str
    load_start: float
    load_end: float
    load_mean: float
    load_max: float


class _Sampler:
    """Samples the RSS of a process tree and the load average every ``interval`` seconds in a
    thread; with ``peak_file``, writes ``"<peak bytes> <elapsed s>"`` there every ~5 s (to watch a
    long run)."""

    def __init__(self, pid: int, interval: float, peak_file: Path | None):
        self.pid, self.interval, self.peak_file = pid, interval, peak_file
        self.peak, self.loads = 0, []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_write = 0.0
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.loads.append(os.getloadavg()[0])
            now = time.perf_counter()
            if self.peak_file is not None and now - last_write >= 5.0:
                self.peak_file.write_text(f"{self.peak} {now - self.t0:.0f}")
                last_write = now
            self._stop.wait(self.interval)

    def __enter__(self) -> "_Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.peak_file is not None:
            self.peak_file.write_text(f"{self.peak} {time.perf_counter() - self.t0:.0f}")


def measure(cmd: list[str], cwd=None, env=None, log: str | os.PathLike | None = None,
            interval: float = 0.2) -> Measured:
    """Run ``cmd`` (stdout and stderr together: captured, or streamed to ``log`` with the peak so
    far in ``log``.peak) while sampling the RSS of it and all its children and the load average."""
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    out_fh = open(log, "w") if log is not None else None
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out_fh or subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        with _Sampler(proc.pid, interval, Path(f"{log}.peak") if log is not None else None) as s:
            output, _ = proc.communicate()
    finally:
        if out_fh is not None:
            out_fh.close()
    wall = time.perf_counter() - t0
    loads = s.loads or [load_start]
    return Measured(cmd=list(cmd), wall=wall, peak_rss=s.peak, returncode=proc.returncode,
                    output=output or "", load_start=load_start, load_end=os.getloadavg()[0],
                    load_mean=sum(loads) / len(loads), load_max=max(loads))


def run_measured(cmd: list[str], cwd=None, env=None) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run a command; return (wall seconds, peak RSS in bytes of it and its children, result)."""
    m = measure(cmd, cwd=cwd, env=env)
    return m.wall, m.peak_rss, subprocess.CompletedProcess(cmd, m.returncode, m.output, "")
