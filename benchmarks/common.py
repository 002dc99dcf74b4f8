"""Helpers shared by the benchmark scripts: timing, peak memory of a process tree."""
from __future__ import annotations

import subprocess
import threading
import time

import psutil


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def tree_rss(pid: int) -> int:
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


def run_measured(cmd: list[str], cwd=None, env=None) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run a command; return (wall seconds, peak RSS in bytes of it and its children, result)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    stop = threading.Event()

    def poll():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(proc.pid))
            stop.wait(0.2)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out, _ = proc.communicate()
    stop.set()
    t.join()
    wall = time.perf_counter() - t0
    return wall, peak, subprocess.CompletedProcess(cmd, proc.returncode, out, "")
