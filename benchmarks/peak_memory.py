"""Peak resident memory of this process alone, for benchmarks that run each contender in a subprocess.

`getrusage(RUSAGE_SELF).ru_maxrss` is the wrong measure there: Linux carries
the parent's high-water mark into a child through fork and exec, so a child
started after the parent built a large dataset reports the parent's peak (our
10M-row preprocessing runs reported 2,269 MB for the floor and the columnar
engine alike: the parent's peak while generating the CSV). `VmHWM` in
/proc/self/status is the high-water mark of this process's own address space,
which exec replaces.
"""
from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set in MB (VmHWM; ru_maxrss where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
