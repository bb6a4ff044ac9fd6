"""Pure synthetic tensors for throughput benchmarks: one random batch, made once on the
devices and fed again every step, so that the measured time is the step's alone."""
from __future__ import annotations

import itertools
from typing import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mobilenet_jax.data.pipeline import AXIS, Batch, DatasetInfo, HostLayout, device_mesh


class SyntheticDataset:
    """Random images in [-1, 1] and random labels; the eval split is the same batch, masked
    as if one example in eight were padding (so the exact-eval path is exercised too)."""

    def __init__(
        self, info: DatasetInfo, *, batch_size: int, eval_batch_size: int, seed: int,
        layout: HostLayout, num_eval_steps: int = -1,
    ):
        self.info = info
        self._layout = layout
        self._num_eval_steps = num_eval_steps
        self._batch = batch_size
        rng = np.random.default_rng([seed, layout.process_index])
        self._sharding = NamedSharding(device_mesh(layout.local_devices), PartitionSpec(AXIS))

        def make(global_batch: int) -> Batch:
            n = layout.local_size(global_batch)
            s = info.image_size
            host = {
                "image": rng.uniform(-1, 1, (n, s, s, 3)).astype(np.float32),
                "label": rng.integers(0, info.num_classes, n).astype(np.int32),
                "mask": (np.arange(n) % 8) != 7,
            }
            return {k: jax.device_put(layout.shard(v), self._sharding) for k, v in host.items()}

        self._train = make(batch_size)
        self._train.pop("mask")
        self._eval = make(eval_batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return self.info.num_train // self._batch

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        return itertools.repeat(self._train)

    def eval_batches(self) -> Iterator[Batch]:
        n = self._num_eval_steps if self._num_eval_steps >= 0 else 1
        return itertools.repeat(self._eval, n)


def synthetic_info(num_classes: int, image_size: int, batch_size: int) -> DatasetInfo:
    """A nominal size of 100 batches per epoch (for epoch-based schedules and logging)."""
    return DatasetInfo("synthetic", 100 * batch_size, batch_size, num_classes, image_size)

