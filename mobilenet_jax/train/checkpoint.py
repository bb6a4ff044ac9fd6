"""orbax checkpoints of the unreplicated TrainState: `<workdir>/checkpoints` keeps the last
N, `<workdir>/best` the one with the best value of the task's metric (`Task.best_metric`:
"accuracy" for a classifier, "AP" for a detector), stored under that name with the rest of
the evaluation's metrics. State is saved as host numpy
arrays (written by the primary process; all processes call save), so a checkpoint restores
onto any number of devices. Non-finite params are never written. The directories are
epath paths (mobilenet_jax/paths.py), so a gs:// workdir keeps its checkpoints in the bucket.
A resumed run starts from the newest checkpoint that restores: a damaged newer one is renamed
aside to `checkpoints/<step>.corrupt` (never deleted, its files untouched) with a warning.

`load_workdir_config` and `restore_variables` read a workdir back for evaluation, export and
the experiments: its config, and a checkpoint's weights checked against a model."""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mobilenet_jax import paths
from mobilenet_jax.errors import UserError
from mobilenet_jax.train.state import TrainState, all_finite, state_from_dict, state_to_numpy

log = logging.getLogger("mobilenet_jax")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be restored (corrupt, or written by another config)."""


def best_value(metrics: Mapping[str, float], name: str) -> float:
    """The metric `name` of a best checkpoint's stored metrics. best/ checkpoints written before
    the metric was stored by name hold it as {"accuracy": value}, a detector's AP included."""
    return metrics[name] if name in metrics else metrics["accuracy"]


class Checkpoints:
    def __init__(self, workdir: paths.PathLike, keep: int = 3, keep_best: bool = True,
                 best_metric: str = "accuracy"):
        self.best_metric = best_metric
        self.directory = paths.resolve(workdir, "--workdir") / "checkpoints"
        self.best_directory = paths.resolve(workdir, "--workdir") / "best"
        opts = dict(create=True, enable_async_checkpointing=False)
        self._latest = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, **opts)
        )
        self._best = (
            ocp.CheckpointManager(
                self.best_directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, best_fn=lambda m: best_value(m, best_metric), best_mode="max", **opts
                ),
            )
            if keep_best
            else None
        )

    def latest_step(self) -> Optional[int]:
        return self._latest.latest_step()

    def path(self, step: int) -> str:
        return str(self.directory / str(step))

    def _numpy_checked(self, state: TrainState) -> dict:
        tree = state_to_numpy(state)
        if not all_finite(tree):
            raise FloatingPointError(
                f"refusing to checkpoint step {int(tree['step'])}: the state has NaN/Inf values"
            )
        return tree

    def save(self, state: TrainState) -> str:
        tree = self._numpy_checked(state)
        step = int(tree["step"])
        if step not in self._latest.all_steps():
            self._latest.save(step, args=ocp.args.StandardSave(tree))
        return self.path(step)

    def save_best(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        """Offers `state` with its evaluation `metrics` to best/, which keeps the checkpoint of
        the highest metrics[best_metric]; all the metrics are stored with it."""
        if self._best is None:
            return
        if self.best_metric not in metrics:
            raise KeyError(f"the evaluation metrics {sorted(metrics)} lack the best-checkpoint metric "
                           f"{self.best_metric!r}")
        tree = self._numpy_checked(state)
        step = int(tree["step"])
        if step not in self._best.all_steps():
            self._best.save(step, args=ocp.args.StandardSave(tree),
                            metrics={k: float(v) for k, v in metrics.items()})

    def restore(self, template: TrainState, step: Optional[int] = None) -> TrainState:
        """The checkpoint at `step` (default: latest) in `template`'s structure, on host."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        path = self.path(step)
        try:
            restored = self._latest.restore(
                step, args=ocp.args.StandardRestore(state_to_numpy(template))
            )
            state = state_from_dict(template, restored)
        except Exception as e:  # orbax/tensorstore raise many types for a damaged file
            raise CheckpointError(
                f"cannot restore checkpoint {path}: {type(e).__name__}: {str(e)[:500]}\n"
                f"The checkpoint is corrupt or was written by a different config; use the "
                f"config that wrote it, or a fresh --workdir."
            ) from e
        if not all_finite(state.params):
            raise CheckpointError(f"checkpoint {path} holds NaN/Inf parameters")
        return state

    def restore_newest_readable(self, template: TrainState, *, primary: bool = True
                                ) -> Optional[TrainState]:
        """The newest checkpoint that restores (None when there is none at all). Each newer
        one that fails is renamed aside to `<step>.corrupt[-n]` by the primary process, with a
        warning; if none restores, one CheckpointError and nothing is renamed."""
        failures: list[tuple[int, CheckpointError]] = []
        state = None
        for step in sorted(self._latest.all_steps(), reverse=True):
            try:
                state = self.restore(template, step)
                break
            except CheckpointError as e:
                failures.append((step, e))
        if state is None:
            if failures:
                raise CheckpointError(
                    f"none of the {len(failures)} checkpoint(s) in {self.directory} can be restored "
                    f"(steps {[s for s, _ in failures]}); the newest: {failures[0][1]}"
                )
            return None
        for step, error in failures if primary else ():
            aside = self._aside(step)
            (self.directory / str(step)).rename(aside)
            log.warning("checkpoint %s cannot be restored (%s); renamed it to %s (untouched) and "
                        "resumed from step %d", self.path(step), str(error).splitlines()[0],
                        aside, int(state.step))
        if failures:
            self._latest.reload()
        return state

    def _aside(self, step: int):
        aside, n = self.directory / f"{step}.corrupt", 1
        while aside.exists():
            n += 1
            aside = self.directory / f"{step}.corrupt-{n}"
        return aside

    def close(self) -> None:
        for m in (self._latest, self._best):
            if m is not None:
                m.wait_until_finished()
                m.close()


def load_workdir_config(workdir: paths.PathLike) -> ml_collections.ConfigDict:
    """The trainer config a workdir was written with (`config.json`), over the defaults."""
    from mobilenet_jax.train.config import default_config

    path = paths.resolve(workdir, "--checkpoint") / "config.json"
    if not paths.exists(path, "--checkpoint") or not path.is_file():
        raise CheckpointError(f"{workdir} has no config.json: not a trainer or converter workdir")
    from mobilenet_jax.overrides import apply_overrides

    saved = json.loads(path.read_text())
    # Keys another version of the trainer wrote are skipped; the run's own process layout
    # ("distributed") is no setting of an evaluation.
    config = apply_overrides(default_config(), {k: v for k, v in saved.items() if k != "distributed"},
                             unknown="ignore")
    config.unlock()
    return config


def restore_variables(workdir: paths.PathLike, model: Any, image_size: int, step: Optional[int] = None,
                      best: bool = False) -> tuple[int, dict]:
    """(step, {"params", "batch_stats"}) of a checkpoint, the EMA weights when it has them.
    Restored without an optimizer template, so any optimizer's checkpoint evaluates; the
    tree is checked leaf by leaf against `model`."""
    from mobilenet_jax.sizes import abstract_variables

    directory = paths.resolve(workdir, "--checkpoint") / ("best" if best else "checkpoints")
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory {directory}")
    manager = ocp.CheckpointManager(directory)
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {directory}")
        try:
            restored = manager.restore(step, args=ocp.args.StandardRestore())
        except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
            raise CheckpointError(
                f"cannot restore {directory}/{step}: {type(e).__name__}: {str(e)[:300]}"
            ) from e
    finally:
        manager.close()
    ema = restored.get("ema_params")
    variables = {
        "params": ema if isinstance(ema, dict) and ema else restored["params"],
        "batch_stats": restored.get("batch_stats") or {},
    }
    expected = abstract_variables(model, image_size)
    want = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(expected)[0]}
    got = {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_flatten_with_path(variables)[0]}
    for key in want:
        if key not in got or got[key] != want[key]:
            raise CheckpointError(
                f"checkpoint {directory}/{step} does not fit the config's model: {key} is "
                f"{got.get(key, 'missing')}, the model expects {want[key]}"
            )
    extra = sorted(set(got) - set(want))
    if extra:
        raise CheckpointError(f"checkpoint {directory}/{step} has variables the model lacks: {extra[:5]}")
    return int(step), variables
