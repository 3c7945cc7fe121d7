"""A diagnostic for benchmarks only: report when this Python process stops running Python code.

Put this folder first on PYTHONPATH with STALLWATCH_S set (gpu_bench does, for `cold` with STALLWATCH=1)
and every Python process of the run, Ray's workers included, starts a thread that wakes every 20 ms.
When a wake-up comes more than STALLWATCH_S late, something held the GIL (a long C call, a garbage
collection) or the machine did not schedule the process: it prints the gap and what each thread was
doing just before and just after, to stderr (Ray forwards it to the driver's output).
"""

import os
import sys
import threading
import time


def _stacks(skip: int) -> dict:
    out = {}
    for ident, frame in sys._current_frames().items():
        if ident == skip:
            continue
        calls = []
        while frame is not None and len(calls) < 8:
            calls.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}")
            frame = frame.f_back
        out[ident] = calls
    return out


def _watch(limit_s: float) -> None:
    me = threading.get_ident()
    before, last = {}, time.monotonic()
    while True:
        time.sleep(0.02)
        now = time.monotonic()
        after = _stacks(me)
        if now - last > limit_s + 0.02:
            names = {t.ident: t.name for t in threading.enumerate()}
            with open("/proc/self/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")[:80]
            ending = f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}"
            lines = [f"STALL {now - last - 0.02:.2f} s ending {ending} pid {os.getpid()} [{title}]"]
            for ident, calls in after.items():
                lines.append(f"  thread {names.get(ident, ident)}: before {' < '.join(before.get(ident, [])[:5])}")
                lines.append(f"  {' ' * len(str(names.get(ident, ident)))}         after  {' < '.join(calls[:5])}")
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
        before, last = after, now


if os.environ.get("STALLWATCH_S"):
    threading.Thread(target=_watch, args=(float(os.environ["STALLWATCH_S"]),), name="stallwatch",
                     daemon=True).start()
