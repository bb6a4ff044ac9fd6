"""Timing an exported network as the papers do: one thread, batch 1, on one core.

`tflite_latency` times a .tflite file through LiteRT (XNNPACK), the papers' runtime;
`onnx_latency` an .onnx file through onnxruntime (one intra-op thread, sequential). Each runs
warm-up invocations, then `runs` timed ones per session, with the process pinned to one core
(`os.sched_setaffinity`, where the OS has it) while it times; median and p90 in ms. Used by
`benchmarks.latency` and `mobilenet_jax.summary --latency`.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence


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


def time_calls(call: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - t))
    return times


def summarize(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered), "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
            "runs": len(ordered)}


def time_sessions(call: Callable[[], Any], runs: int, warmup: int, sessions: int) -> dict[str, Any]:
    """{"median_ms", "p90_ms", "runs", "session_medians_ms", "pinned_core"} of `call`, timed on one core."""
    session_medians, all_times = [], []
    with pinned_to_one_core() as core:
        for _ in range(sessions):
            times = time_calls(call, runs, warmup)
            session_medians.append(statistics.median(times))
            all_times.extend(times)
    return {**summarize(all_times), "session_medians_ms": session_medians, "pinned_core": core}


def tflite_latency(model: bytes, runs: int = 50, warmup: int = 10, sessions: int = 1) -> dict[str, Any]:
    """`time_sessions` of a .tflite flatbuffer on zero inputs of its signature's shape and dtype."""
    import numpy as np

    from mobilenet_jax.export import tflite_interpreter

    runner = tflite_interpreter(model, num_threads=1).get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    inputs = {name: np.zeros(detail["shape"], detail["dtype"])}
    return time_sessions(lambda: runner(**inputs), runs, warmup, sessions)


def onnx_latency(path: str | Path, runs: int = 50, warmup: int = 10, sessions: int = 1) -> dict[str, Any]:
    """`time_sessions` of an .onnx file (onnxruntime, one thread) on zero inputs of its input's shape and type."""
    import numpy as np

    from mobilenet_jax.export import onnx_session, onnx_signature

    session = onnx_session(path, num_threads=1)
    signature = onnx_signature(session)
    (inp,) = session.get_inputs()
    inputs = {inp.name: np.zeros(inp.shape, np.dtype(signature["input"]["dtype"]))}
    return time_sessions(lambda: session.run(None, inputs), runs, warmup, sessions)


def file_latency(path: str | Path, runs: int = 50, warmup: int = 10, sessions: int = 1) -> dict[str, Any]:
    """`tflite_latency` or `onnx_latency` of an exported file, by its suffix."""
    path = Path(path)
    if path.suffix == ".tflite":
        return tflite_latency(path.read_bytes(), runs, warmup, sessions)
    if path.suffix == ".onnx":
        return onnx_latency(path, runs, warmup, sessions)
    raise ValueError(f"no latency runtime for {path.name}: .tflite (LiteRT) and .onnx (onnxruntime) are timed")
