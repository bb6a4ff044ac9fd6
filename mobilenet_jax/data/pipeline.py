"""What every data set shares: the host-batch contract, exact-eval padding, device prefetch.

Contract: a data set yields host-local batches `{"image": [local_devices, per_device, H, W,
C] float32 in [-1, 1], "label": [local_devices, per_device] int32}`; evaluation batches add
`"mask"` (False on padding), and every process yields the same number of them so that the
pmapped collectives line up.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Iterable, Iterator, Protocol, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Batch = dict[str, np.ndarray]
#: The one name of the local-device axis: the mesh batches are sharded over, the axis the
#: steps are pmapped over and cross-replica BatchNorm and the loss reduce over.
AXIS = "batch"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Sizes of a data set, global over all processes."""

    name: str
    num_train: int
    num_eval: int
    num_classes: int
    image_size: int


class Dataset(Protocol):
    info: DatasetInfo

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        """Training batches from global step `start_step` on; the order depends only on the
        seed and the step, so a resumed run sees the data an uninterrupted one would."""

    def eval_batches(self) -> Iterator[Batch]:
        """One pass over the evaluation split, padded and masked (exact evaluation)."""


@dataclasses.dataclass(frozen=True)
class HostLayout:
    """How a global batch maps onto this process: its slice and its local devices."""

    process_index: int
    process_count: int
    local_devices: int

    def local_size(self, global_batch: int) -> int:
        return global_batch // self.process_count

    def process_slice(self, global_batch: int) -> slice:
        n = self.local_size(global_batch)
        return slice(self.process_index * n, (self.process_index + 1) * n)

    def shard(self, x: np.ndarray) -> np.ndarray:
        """[local_batch, ...] -> [local_devices, local_batch // local_devices, ...]."""
        return x.reshape((self.local_devices, -1) + x.shape[1:])


def host_layout(num_devices: int | None = None) -> HostLayout:
    n = jax.local_device_count() if num_devices is None or num_devices < 0 else num_devices
    return HostLayout(jax.process_index(), jax.process_count(), n)


def device_mesh(num_devices: int) -> Mesh:
    """The local devices a pmap over `num_devices` leading entries runs on, as a 1-D mesh."""
    return Mesh(np.asarray(jax.local_devices()[:num_devices]), (AXIS,))


def prefetch_to_device(batches: Iterable[Batch], size: int, num_devices: int) -> Iterator:
    """Places batches on the local devices `size` steps ahead (sharded along axis 0, the
    layout `jax.pmap` reads), so host-to-device copies overlap the step. Arrays that are
    already jax.Arrays (synthetic data kept on device) pass through untouched."""
    sharding = NamedSharding(device_mesh(num_devices), PartitionSpec(AXIS))

    def put(batch: Batch):
        return {
            k: v if isinstance(v, jax.Array) else jax.device_put(v, sharding)
            for k, v in batch.items()
        }

    queue: collections.deque = collections.deque()
    iterator = iter(batches)
    for batch in itertools.islice(iterator, max(size, 1)):
        queue.append(put(batch))
    while queue:
        yield queue.popleft()
        for batch in itertools.islice(iterator, 1):
            queue.append(put(batch))


class ArrayDataset:
    """A data set held in host memory as numpy arrays (embedded data, small tests).

    `train` and `eval` are `(images, labels)` or a dict of arrays with a leading example
    axis and an "image" entry (e.g. detection's image, boxes, labels, box_mask); batches
    carry every array. Every process holds the whole array and reads its own slice of each
    global batch, so the data seen by device d at step s is the same whatever the process count.
    """

    def __init__(
        self,
        info: DatasetInfo,
        train: tuple[np.ndarray, np.ndarray] | dict[str, np.ndarray],
        eval: tuple[np.ndarray, np.ndarray] | dict[str, np.ndarray],
        *,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        layout: HostLayout,
        num_eval_steps: int = -1,
    ):
        self.info = info
        self._train, self._eval = _as_dict(train), _as_dict(eval)
        self._batch, self._eval_batch = batch_size, eval_batch_size
        self._seed, self._layout = seed, layout
        self._num_eval_steps = num_eval_steps
        if len(self._train["image"]) < batch_size:
            raise ValueError(f"{info.name}: {len(self._train['image'])} training examples < batch {batch_size}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self._train["image"]) // self._batch

    def train_indices(self, step: int) -> np.ndarray:
        """Global example indices of the batch at `step` (epoch-wise permutation by seed)."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self._seed, epoch]).permutation(len(self._train["image"]))
        return perm[offset * self._batch : (offset + 1) * self._batch]

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        for step in itertools.count(start_step):
            idx = self.train_indices(step)[self._layout.process_slice(self._batch)]
            yield {k: self._layout.shard(v[idx]) for k, v in self._train.items()}

    def eval_batches(self) -> Iterator[Batch]:
        n = len(self._eval["image"])
        num_batches = -(-n // self._eval_batch)
        if self._num_eval_steps >= 0:
            num_batches = min(num_batches, self._num_eval_steps)
        for b in range(num_batches):
            idx = np.arange(b * self._eval_batch, (b + 1) * self._eval_batch)
            idx = idx[self._layout.process_slice(self._eval_batch)]
            mask = idx < n
            idx = np.where(mask, idx, 0)
            batch = {k: self._layout.shard(v[idx]) for k, v in self._eval.items()}
            batch["mask"] = self._layout.shard(mask)
            yield batch


def _as_dict(arrays: tuple[np.ndarray, np.ndarray] | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(arrays, dict):
        if "image" not in arrays:
            raise ValueError(f"array data set needs an 'image' entry, got {sorted(arrays)}")
        return arrays
    images, labels = arrays
    return {"image": images, "label": labels}


def split_evenly(total: int, parts: int) -> Sequence[int]:
    """Sizes of `parts` near-equal consecutive parts of `total` (the first ones larger)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]
