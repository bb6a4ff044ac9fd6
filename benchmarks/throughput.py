"""Training and inference throughput, compile time and peak memory of every model.

    python -m benchmarks.throughput                                  # all models, GPU sizes
    python -m benchmarks.throughput --models mobilenet_v2 --batch-sizes 256 512
    python -m benchmarks.throughput --preset cpu                     # small sizes, for a CPU

Each train step is the trainer's own (`mobilenet_jax.train`: the papers' RMSProp with L2
decay, EMA of the weights, cross-replica BatchNorm, `jax.pmap` over all local devices) on
synthetic images that already live on the devices; warm-up is excluded and the figure is
the median over repeats. Compile time is measured in fresh child processes against an empty
persistent compilation cache (cold) and then against the cache the first child filled
(warm). When PyTorch and a CUDA GPU are present, torchvision's MobileNetV2/V3 and timm's
Xception (if installed) are timed the same way, eager and `torch.compile`d, and the ratio
is printed. Results: a table on stdout and JSON under benchmarks/results/ with the device,
versions and command.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from mobilenet_jax import cli

RESULTS_DIR = Path(__file__).parent / "results"
MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "xception")
#: Reference implementations to time beside ours when PyTorch and a GPU are present.
TORCH_MODELS = {
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large"),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small"),
    "xception": ("timm", "xception41"),
}
PRESETS = {
    "gpu": dict(batch_sizes=[256], resolution=224, steps=20, repeats=5),
    "cpu": dict(batch_sizes=[8], resolution=64, steps=2, repeats=3),
}


def resolution_for(model: str, resolution: int) -> int:
    """Xception runs at 299 where the others run at 224 (its paper's input size)."""
    return round(resolution * 299 / 224) if model == "xception" else resolution


# ------------------------------------------------------------------------------------------
# Our models, through the trainer's step
# ------------------------------------------------------------------------------------------


def build_step(model_name: str, batch_size: int, resolution: int, dtype: str, width: float = 1.0,
               depthwise_impl: str = "auto"):
    """(pmapped train step, pmapped eval step, state, train batch) of one model."""
    import jax
    import jax.numpy as jnp

    from mobilenet_jax.tasks import pmap_eval_step
    from mobilenet_jax.tasks.classification import ClassificationTask
    from mobilenet_jax.train import (build_model, build_optimizer, create_train_state, default_config,
                                     make_train_step, pmap_train_step, resolve_durations)

    config = default_config()
    config.model = model_name
    config.model_kwargs = {"width": width, "depthwise_impl": depthwise_impl}
    config.dtype = dtype
    config.batch_size = batch_size
    config.ema_decay = 0.9999
    devices = jax.local_devices()
    if batch_size % len(devices):
        raise ValueError(f"batch size {batch_size} is not divisible by the {len(devices)} local devices")
    durations = resolve_durations(config, steps_per_epoch=1000)
    tx, schedule = build_optimizer(config, durations)
    model = build_model(config, num_classes=1000)
    state = create_train_state(model, tx, jax.random.key(0), resolution, use_ema=True)
    task = ClassificationTask(model)
    train = pmap_train_step(make_train_step(model, tx, schedule, loss_fn=task.loss_fn(), ema_decay=config.ema_decay))
    evaluate = pmap_eval_step(task.eval_step())
    per_device = batch_size // len(devices)

    @jax.pmap
    def make_batch(key):
        k1, k2 = jax.random.split(key)
        return {
            "image": jax.random.uniform(k1, (per_device, resolution, resolution, 3), jnp.float32, -1, 1),
            "label": jax.random.randint(k2, (per_device,), 0, 1000),
            "mask": jnp.ones((per_device,), jnp.bool_),
        }

    batch = make_batch(jax.random.split(jax.random.key(1), len(devices)))
    return train, evaluate, state, batch


def time_ours(model_name: str, batch_size: int, resolution: int, dtype: str, steps: int, repeats: int,
              width: float = 1.0, depthwise_impl: str = "auto") -> dict:
    import jax

    train, evaluate, state, batch = build_step(model_name, batch_size, resolution, dtype, width, depthwise_impl)
    t0 = time.perf_counter()
    state, metrics = train(state, batch)
    jax.block_until_ready(metrics)
    first_call = time.perf_counter() - t0

    def timed_train(state):
        t = time.perf_counter()
        for _ in range(steps):
            state, metrics = train(state, batch)
        jax.block_until_ready(metrics)
        return state, time.perf_counter() - t

    state, _ = timed_train(state)  # warm-up
    train_times = []
    for _ in range(repeats):
        state, seconds = timed_train(state)
        train_times.append(seconds)

    jax.block_until_ready(evaluate(state, batch))  # compile + warm-up
    eval_times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            out = evaluate(state, batch)
        jax.block_until_ready(out)
        eval_times.append(time.perf_counter() - t)

    train_step = statistics.median(train_times) / steps
    memory = jax.local_devices()[0].memory_stats() or {}
    return {
        "train_images_per_s": batch_size / train_step,
        "eval_images_per_s": batch_size * steps / statistics.median(eval_times),
        "train_step_ms": 1e3 * train_step,
        "first_call_s": first_call,
        "peak_memory_gib": memory["peak_bytes_in_use"] / 2**30 if "peak_bytes_in_use" in memory else None,
    }


def compile_times(model_name: str, batch_size: int, resolution: int, dtype: str, width: float = 1.0,
                  depthwise_impl: str = "auto") -> dict:
    """First-call seconds (compile + one step) of the train step in two fresh processes that
    share one new persistent compilation cache: the first compiles, the second reads it."""
    with tempfile.TemporaryDirectory() as cache:
        runs = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.throughput", "--first-call-only", model_name,
                 "--batch-sizes", str(batch_size), "--resolution", str(resolution), "--dtype", dtype,
                 "--compilation-cache-dir", cache, "--width", str(width), "--depthwise-impl", depthwise_impl],
                capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        cache_files = sum(1 for p in Path(cache).rglob("*") if p.is_file())
    return {"compile_cold_s": runs[0]["first_call_s"], "compile_warm_s": runs[1]["first_call_s"],
            "cache_files": cache_files}


def first_call_only(model_name: str, batch_size: int, resolution: int, dtype: str, cache_dir: str,
                    width: float = 1.0, depthwise_impl: str = "auto") -> None:
    import jax

    from mobilenet_jax.train.distributed import enable_compilation_cache

    enable_compilation_cache(cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    train, _, state, batch = build_step(model_name, batch_size, resolution, dtype, width, depthwise_impl)
    t0 = time.perf_counter()
    jax.block_until_ready(train(state, batch))
    print(json.dumps({"first_call_s": time.perf_counter() - t0}))


# ------------------------------------------------------------------------------------------
# PyTorch references (GPU only)
# ------------------------------------------------------------------------------------------


def torch_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def time_torch(model_name: str, batch_size: int, resolution: int, steps: int, repeats: int, compiled: bool) -> Optional[dict]:
    """SGD-momentum train step of the reference model: channels_last, bf16 autocast."""
    import torch

    library, name = TORCH_MODELS[model_name]
    try:
        if library == "timm":
            import timm

            net = timm.create_model(name, num_classes=1000)
        else:
            import torchvision

            net = getattr(torchvision.models, name)(num_classes=1000)
    except ImportError:
        return None
    net = net.cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, resolution, resolution, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch_size,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step = torch.compile(step) if compiled else step
    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first_call = time.perf_counter() - t0
    for _ in range(steps):
        step()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"train_images_per_s": batch_size * steps / statistics.median(times), "first_call_s": first_call,
            "reference": f"{library}.{name}" + (" compiled" if compiled else " eager")}


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def environment(argv: list[str]) -> dict:
    import flax
    import jax
    import optax

    device = jax.local_devices()[0]
    env = {
        "device": getattr(device, "device_kind", str(device)),
        "platform": device.platform,
        "local_devices": jax.local_device_count(),
        "host": platform.node(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.throughput", *argv]),
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    return env


def format_table(rows: list[dict]) -> str:
    header = ["model", "batch", "res", "train img/s", "eval img/s", "step ms", "compile cold s",
              "warm s", "peak GiB", "torch eager", "torch compiled", "x compiled"]
    lines = [header]
    for r in rows:
        def f(key, fmt="{:,.0f}"):
            return "-" if r.get(key) is None else fmt.format(r[key])
        lines.append([r["model"], str(r["batch_size"]), str(r["resolution"]), f("train_images_per_s"),
                      f("eval_images_per_s"), f("train_step_ms", "{:.1f}"), f("compile_cold_s", "{:.1f}"),
                      f("compile_warm_s", "{:.1f}"), f("peak_memory_gib", "{:.1f}"),
                      f("torch_eager_images_per_s"), f("torch_compiled_images_per_s"),
                      f("ratio_to_torch_compiled", "{:.2f}")])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    env = environment(argv)
    with_torch = args.torch == "on" or (args.torch == "auto" and torch_available())
    rows = []
    for model_name in args.models:
        resolution = resolution_for(model_name, args.resolution)
        for batch_size in args.batch_sizes:
            row: dict[str, Any] = {"model": model_name, "batch_size": batch_size, "resolution": resolution,
                                   "dtype": args.dtype}
            row["width"] = args.width
            row["depthwise_impl"] = args.depthwise_impl
            row.update(time_ours(model_name, batch_size, resolution, args.dtype, args.steps, args.repeats,
                                 args.width, args.depthwise_impl))
            if args.compile_times:
                row.update(compile_times(model_name, batch_size, resolution, args.dtype, args.width,
                                         args.depthwise_impl))
            if with_torch and model_name in TORCH_MODELS:
                for compiled in (False, True):
                    ref = time_torch(model_name, batch_size, resolution, args.steps, args.repeats, compiled)
                    if ref is not None:
                        kind = "compiled" if compiled else "eager"
                        row[f"torch_{kind}_images_per_s"] = ref["train_images_per_s"]
                        row[f"torch_{kind}_reference"] = ref["reference"]
                if row.get("torch_compiled_images_per_s"):
                    row["ratio_to_torch_compiled"] = row["train_images_per_s"] / row["torch_compiled_images_per_s"]
                if row.get("torch_eager_images_per_s"):
                    row["ratio_to_torch_eager"] = row["train_images_per_s"] / row["torch_eager_images_per_s"]
            rows.append(row)
            print(format_table([row]).splitlines()[-1], flush=True)
    return {"environment": env, "rows": rows}


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch-sizes", nargs="+", type=int)
    parser.add_argument("--resolution", type=int, help="input side (Xception gets x299/224)")
    parser.add_argument("--steps", type=int, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--torch", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--no-compile-times", dest="compile_times", action="store_false")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON result")
    parser.add_argument("--first-call-only", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--compilation-cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of every model")
    parser.add_argument("--depthwise-impl", default="auto", choices=["auto", "shifted", "grouped"],
                        help="depthwise convolution form (layers.depthwise_conv2d; auto = per backend)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.first_call_only:
        first_call_only(args.first_call_only, args.batch_sizes[0], args.resolution, args.dtype,
                        args.compilation_cache_dir, args.width, args.depthwise_impl)
        return 0
    result = run(args, argv)
    print()
    print(format_table(result["rows"]))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = result["environment"]["device"].replace(" ", "_").lower()
    path = args.out / f"throughput-{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    cli.main_of(main)
