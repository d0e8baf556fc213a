"""The timing protocol every PyTorch reference benchmark shares with `tessera bench`: one warm-up
call, `reps` timed calls, and one JSON line {"median_s", "min_s", "torch"} that the Rust side
parses."""
import json
import time

import torch


def report(step, reps: int) -> None:
    step()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"median_s": times[len(times) // 2], "min_s": times[0], "torch": torch.__version__}))
