"""The tasks of the one trainer (DESIGN.md, "Where the house is heading"). The loop, pmap,
prefetch, checkpoints and metrics are task-blind; a task is a small object that supplies

- `batch_keys`: the batch entries its loss and eval step read (evaluation batches add "mask",
  False on padding);
- `loss_fn()`: the per-device training loss `(model outputs, batch) -> (loss, metrics to
  average)` for `train.steps.make_train_step` (it may use collectives over `AXIS`);
- `eval_step()`: the per-device `(variables, batch) -> outputs` of one evaluation batch;
- `reduce(pairs)`: the metrics of a whole split from its `(host batch, device outputs)` pairs,
  exact (padding masked out);
- `best_metric`: the key of `reduce`'s result the best checkpoint is kept by (higher is better);
- `from_config(config, model)`: the task for a trainer config's model.

`evaluator(task)` runs any task's evaluation (prefetched onto the devices, compiled once).

A task joins by registration: `@register_task(name)` on its class, its module in
`TASK_MODULES` (imported on the first lookup), `task = name` on its models (`Network.task`)
and its data sets in `train.config.DATASET_TASKS`. `build_task(config, model)` picks the task
the config's (model, data set) pair makes (`train.config.check_task`), the trainer's and the
evaluation command's one choice.
"""
from __future__ import annotations

import collections
import importlib
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, TypeVar

import jax

from mobilenet_jax.data.pipeline import AXIS, Batch, Dataset, prefetch_to_device

if TYPE_CHECKING:
    import flax.linen as nn
    import ml_collections

    from mobilenet_jax.train.state import TrainState

Metrics = dict[str, jax.Array]
#: A task's per-device training loss: (model outputs, batch) -> (loss, metrics to average).
LossFn = Callable[[Any, Batch], tuple[jax.Array, Metrics]]
#: A task's per-device evaluation: ({"params", "batch_stats"}, batch) -> outputs.
EvalStep = Callable[[dict, Batch], Any]

#: The modules whose import registers the tasks, one line per task.
TASK_MODULES: tuple[str, ...] = (
    "mobilenet_jax.tasks.classification",
    "mobilenet_jax.tasks.detection",
    "mobilenet_jax.tasks.segmentation",
)


class Task(Protocol):
    """What the trainer (train/loop.py), the evaluation command and the experiments need from
    a task; see the module docstring."""

    best_metric: str
    batch_keys: tuple[str, ...]

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, model: nn.Module) -> Task: ...

    def loss_fn(self) -> LossFn: ...

    def eval_step(self) -> EvalStep: ...

    def reduce(self, outputs: Iterable[tuple[Batch, Any]]) -> dict[str, float]: ...


_TASKS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator adding a task (a class following `Task`) to the registry under `name`."""

    def add(cls: T) -> T:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        _TASKS[name] = cls
        return cls

    return add


def _registered() -> dict[str, type]:
    for module in TASK_MODULES:
        importlib.import_module(module)
    return _TASKS


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_registered())


def get_task(name: str) -> type:
    """The task class registered under `name` (a model's `task`, a data set's in DATASET_TASKS)."""
    tasks = _registered()
    if name not in tasks:
        raise KeyError(f"no task {name!r} is registered; registered tasks: {sorted(tasks)}")
    return tasks[name]


def build_task(config: ml_collections.ConfigDict, model: nn.Module) -> Task:
    """The task of the config's (model, data set) pair, for `model`; a ConfigError when the two
    are of different tasks."""
    from mobilenet_jax.train.config import check_task

    return get_task(check_task(config.model, config.dataset)).from_config(config, model)


def select(batch: Batch, keys: Iterable[str], task: Task) -> Batch:
    """The entries of `batch` the task reads (others stay on the host)."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"{type(task).__name__} reads batch entries {missing}, which the data set's "
                         f"batches lack (they have {sorted(batch)})")
    return {k: batch[k] for k in keys}


def pmap_eval_step(eval_step: EvalStep) -> Callable[[TrainState, Batch], Any]:
    """`jax.pmap` of a per-device eval step over the local devices: the state broadcast in (its
    evaluation weights: the EMA when the run keeps one), the batch mapped over its leading axis,
    the outputs returned per device ([local devices, ...])."""
    return jax.pmap(
        lambda state, batch: eval_step({"params": state.eval_params, "batch_stats": state.batch_stats}, batch),
        axis_name=AXIS, in_axes=(None, 0), out_axes=0)


def evaluator(task: Task) -> Callable[[TrainState, Dataset, int, int], dict[str, float]]:
    """`evaluate(state, dataset, num_devices, prefetch) -> metrics`: one exact pass of `task`
    over the data set's evaluation split, batches placed on `num_devices` local devices
    `prefetch` steps ahead (`data.prefetch_to_device`); the step is compiled once."""
    p_eval = pmap_eval_step(task.eval_step())
    keys = tuple(task.batch_keys) + ("mask",)

    def evaluate(state: TrainState, dataset: Dataset, num_devices: int, prefetch: int) -> dict[str, float]:
        hosts: collections.deque = collections.deque()  # the host batches prefetched so far, in order

        def device_bound(batches: Iterable[Batch]) -> Iterator[Batch]:
            for batch in batches:
                hosts.append(batch)
                yield select(batch, keys, task)

        placed = prefetch_to_device(device_bound(dataset.eval_batches()), prefetch, num_devices)
        return task.reduce((hosts.popleft(), p_eval(state, batch)) for batch in placed)

    return evaluate


__all__ = [
    "TASK_MODULES", "EvalStep", "LossFn", "Metrics", "Task", "build_task", "evaluator",
    "get_task", "list_tasks", "pmap_eval_step", "register_task", "select",
]
