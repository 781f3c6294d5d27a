"""How fast this VM is right now, printed beside every timing: its speed swings 3-5x with its neighbours.

    from machine import speed_and_load     # benchmarks/ is on sys.path when a script there runs
    print(speed_and_load())                # "113 GFLOP/s; load 1.0 / 1.2 / 1.3"
"""

from __future__ import annotations

import os
import time


def machine_speed() -> float:
    """GFLOP/s of fp32 512x512 matrix products on one thread, best of 5 (the quiet 2-core VM: ~110)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - began)
    torch.set_num_threads(threads)
    return 2 * 512 ** 3 / best / 1e9


def speed_and_load() -> str:
    return f"{machine_speed():.0f} GFLOP/s; load " + " / ".join(f"{x:.1f}" for x in os.getloadavg())
