"""Timing a .tflite file as the papers do: LiteRT (XNNPACK), one thread, batch 1, on one core.

`tflite_latency` runs warm-up invocations, then `runs` timed ones per session, with the
process pinned to one core (`os.sched_setaffinity`, where the OS has it) while it times;
median and p90 in ms. Used by `benchmarks.latency` and `mobilenet_jax.summary --latency`.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Any, Iterator, Optional, Sequence


@contextlib.contextmanager
def pinned_to_one_core() -> Iterator[Optional[int]]:
    """While timing, this process runs on one core (the last one allowed; the conversions
    before use them all); yields the core, None where the OS cannot pin."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    core = max(allowed)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, allowed)


def time_interpreter(interpreter, inputs: dict, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of `runs` invocations after `warmup` untimed ones."""
    runner = interpreter.get_signature_runner()
    for _ in range(warmup):
        runner(**inputs)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        runner(**inputs)
        times.append(1e3 * (time.perf_counter() - t))
    return times


def summarize(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered), "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
            "runs": len(ordered)}


def tflite_latency(model: bytes, runs: int = 50, warmup: int = 10, sessions: int = 1) -> dict[str, Any]:
    """{"median_ms", "p90_ms", "runs", "session_medians_ms", "pinned_core"} of a .tflite
    flatbuffer on zero inputs of its signature's shape and dtype."""
    import numpy as np

    from mobilenet_jax.export import tflite_interpreter

    interpreter = tflite_interpreter(model, num_threads=1)
    (name, detail), = interpreter.get_signature_runner().get_input_details().items()
    x = np.zeros(detail["shape"], detail["dtype"])
    session_medians, all_times = [], []
    with pinned_to_one_core() as core:
        for _ in range(sessions):
            times = time_interpreter(interpreter, {name: x}, runs, warmup)
            session_medians.append(statistics.median(times))
            all_times.extend(times)
    return {**summarize(all_times), "session_medians_ms": session_medians, "pinned_core": core}
