"""Training steps/s of configs/embedded.py (MobileNetV2 0.35, batch 64, 32x32) on this CPU:

    python -m benchmarks.embedded_steps [--sessions 7] [--steps 20]

The trainer's own pmapped step (one device) on one fixed batch; the first call (compilation)
is excluded. Prints the median over sessions of steps per wall second and per CPU second of
this process (the second is steadier on a machine shared with other jobs). The check behind
the per-pass depthwise dispatch: CPU training no slower than before it.
"""
from __future__ import annotations

import statistics
import time
from typing import Optional, Sequence

from mobilenet_jax import cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m benchmarks.embedded_steps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed session")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from mobilenet_jax.tasks.classification import ClassificationTask
    from mobilenet_jax.train import (build_model, build_optimizer, create_train_state, make_train_step,
                                     pmap_train_step, resolve_durations)
    from mobilenet_jax.train.config import load_config

    config = load_config("configs/embedded.py")
    tx, schedule = build_optimizer(config, resolve_durations(config, steps_per_epoch=312))
    model = build_model(config, num_classes=10)
    state = create_train_state(model, tx, jax.random.key(0), config.image_size, config.ema_decay > 0)
    step = pmap_train_step(make_train_step(model, tx, schedule, loss_fn=ClassificationTask(model).loss_fn(),
                                           ema_decay=config.ema_decay))
    n, size = config.batch_size, config.image_size
    batch = {"image": jax.random.uniform(jax.random.key(1), (1, n, size, size, 3), jnp.float32, -1, 1),
             "label": (jnp.arange(n) % 10).reshape(1, n), "mask": jnp.ones((1, n), bool)}
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    wall, cpu = [], []
    for _ in range(args.sessions):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        wall.append(args.steps / (time.perf_counter() - t))
        cpu.append(args.steps / (time.process_time() - c))
    print(f"steps/s {statistics.median(wall):.2f} (sessions: {' '.join(f'{r:.1f}' for r in wall)}); "
          f"steps per CPU-second {statistics.median(cpu):.2f}")
    return 0


if __name__ == "__main__":
    cli.main_of(main)
