"""Depthwise 3x3 convolution: XLA's grouped convolution vs `layers.depthwise_conv2d` (k*k
shifted multiply-adds), forward and forward+backward, at MobileNetV2 layer sizes.

    python -m benchmarks.depthwise            # CPU-sized shapes (batch 64, 32x32 network)
    python -m benchmarks.depthwise --batch 256 --scale 7   # 224x224 network sizes

Prints a table (median ms over repeats, and the speed-up) and writes JSON under
benchmarks/results/. Both formulations are checked to agree before they are timed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from mobilenet_jax import cli

RESULTS_DIR = Path(__file__).parent / "results"
#: (spatial side at a 32x32 input, channels, stride) of MobileNetV2-0.35's depthwise layers,
#: one per distinct shape.
LAYERS = ((16, 16, 1), (16, 48, 2), (8, 48, 1), (8, 96, 2), (4, 96, 1), (4, 192, 2), (2, 192, 1), (1, 336, 1))


def grouped_conv(x, kernel, strides):
    from jax import lax

    return lax.conv_general_dilated(x, kernel, (strides, strides), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=x.shape[-1])


def _median_ms(fn, args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def run(batch: int, scale: int, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mobilenet_jax.layers import depthwise_conv2d

    rows = []
    for side, channels, strides in LAYERS:
        side *= scale
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((batch, side, side, channels), np.float32))
        kernel = jnp.asarray(rng.standard_normal((3, 3, 1, channels), np.float32))
        impls = {"xla_grouped": lambda x, k, s=strides: grouped_conv(x, k, s),
                 "shifted": lambda x, k, s=strides: depthwise_conv2d(x, k, strides=s)}
        ref = impls["xla_grouped"](x, kernel)
        got = impls["shifted"](x, kernel)
        err = float(jnp.max(jnp.abs(ref - got)) / jnp.max(jnp.abs(ref)))
        if err > 1e-5:
            raise AssertionError(f"formulations disagree at {x.shape} stride {strides}: rel. error {err:.2e}")
        row = {"input": list(x.shape), "strides": strides}
        for name, f in impls.items():
            fwd = jax.jit(f)
            grad = jax.jit(jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) ** 2), argnums=(0, 1)))
            row[f"{name}_fwd_ms"] = _median_ms(fwd, (x, kernel), repeats)
            row[f"{name}_grad_ms"] = _median_ms(grad, (x, kernel), repeats)
        rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m benchmarks.depthwise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--scale", type=int, default=1, help="multiply every spatial side (7: a 224x224 network)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    import jax

    rows = run(args.batch, args.scale, args.repeats)
    print(f"{'input NHWC':>22} {'s':>2} {'grouped fwd':>12} {'shifted fwd':>12} {'x':>6} "
          f"{'grouped f+b':>12} {'shifted f+b':>12} {'x':>6}   (ms, median of {args.repeats})")
    for r in rows:
        print(f"{str(tuple(r['input'])):>22} {r['strides']:>2} {r['xla_grouped_fwd_ms']:12.2f} {r['shifted_fwd_ms']:12.2f} "
              f"{r['xla_grouped_fwd_ms'] / r['shifted_fwd_ms']:6.1f} {r['xla_grouped_grad_ms']:12.2f} "
              f"{r['shifted_grad_ms']:12.2f} {r['xla_grouped_grad_ms'] / r['shifted_grad_ms']:6.1f}")
    totals = {k: sum(r[k] for r in rows) for k in rows[0] if k.endswith("_ms")}
    print(f"{'total':>25} {totals['xla_grouped_fwd_ms']:12.2f} {totals['shifted_fwd_ms']:12.2f} "
          f"{totals['xla_grouped_fwd_ms'] / totals['shifted_fwd_ms']:6.1f} {totals['xla_grouped_grad_ms']:12.2f} "
          f"{totals['shifted_grad_ms']:12.2f} {totals['xla_grouped_grad_ms'] / totals['shifted_grad_ms']:6.1f}")
    if not args.no_save:
        device = jax.devices()[0]
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"depthwise-{device.platform}-{dt.date.today().isoformat()}.json"
        out.write_text(json.dumps({
            "command": " ".join(["python -m benchmarks.depthwise", *sys.argv[1:]]),
            "device": device.device_kind, "platform": device.platform, "jax": jax.__version__,
            "python": platform.python_version(), "rows": rows, "totals": totals,
        }, indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    cli.main_of(main)
