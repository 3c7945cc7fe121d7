"""Where a cold start goes: the launcher's log (Ray's driver output, every replica's lines) cut into phases.

Each phase ends at the first log line that marks it; times are seconds after the launch. Used by
gpu_bench's `cold` mode and runnable on any saved log:

    python bench/start_timeline.py LOG LAUNCH_UNIX_TIME
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

# (phase name, the text of the log line that ends it), in the order they happen
MARKERS = [
    ("serve CLI started", "Running config file"),
    ("Ray started", "Started a local Ray instance"),
    ("Serve controller and proxy", "Started Serve in namespace"),
    ("app build task started", "Importing application '"),
    ("app built", "Imported and built app"),
    ("generator replica asked for", "Adding 1 replica to Deployment(name='Generator'"),
    ("generator __init__ entered", "generator replica starting"),
    ("ingress ready", "ingress ready"),
    ("generator loaded", "generator loaded in"),
    ("generator ready (self-check passed)", "FastWan Serve generator self-check"),
]
STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3})")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def timeline(log: str, launched_at: float) -> dict[str, float]:
    """{phase: seconds after launch} for each marker found (the first line that has it)."""
    seen: dict[str, float] = {}
    for line in ANSI.sub("", log).splitlines():
        stamp = STAMP.search(line)
        if not stamp:
            continue
        for name, text in MARKERS:
            if name not in seen and text in line:
                when = dt.datetime.strptime(stamp.group(1).replace(".", ","), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                seen[name] = round(when - launched_at, 2)
    return {name: seen[name] for name, _ in MARKERS if name in seen}


def describe(phases: dict[str, float]) -> str:
    """'name +delta (at t)' for each phase, in order."""
    parts, last = [], 0.0
    for name, at in phases.items():
        parts.append(f"{name} +{at - last:.1f} ({at:.1f})")
        last = at
    return "; ".join(parts)


if __name__ == "__main__":
    print(describe(timeline(Path(sys.argv[1]).read_text(errors="replace"), float(sys.argv[2]))))
