"""Running a benchmark contender in a subprocess of its own, and what it reports back.

A contender runs as `python <script> --child ...`, so its imports are not
timed and its peak memory is its own; its last stdout line is its result as
JSON, which includes `peak_rss_mb()`.

That peak is `VmHWM` from /proc/self/status, not `getrusage(RUSAGE_SELF).ru_maxrss`:
Linux carries the parent's high-water mark into a child through fork and exec,
so a child started after the parent built a large dataset reports the parent's
peak (our 10M-row preprocessing runs reported 2,269 MB for the floor and the
columnar engine alike: the parent's peak while generating the CSV). `VmHWM` is
the high-water mark of this process's own address space, which exec replaces.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak resident set in MB (VmHWM; ru_maxrss where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def run_child(arguments: list[str], what: str) -> dict:
    """Runs `python <arguments>` with the repository on the path; returns its last stdout line, parsed."""
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
