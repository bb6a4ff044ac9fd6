"""orbax checkpoints of the unreplicated TrainState: `<workdir>/checkpoints` keeps the last
N, `<workdir>/best` the one with the best eval accuracy. State is saved as host numpy
arrays (written by the primary process; all processes call save), so a checkpoint restores
onto any number of devices. Non-finite params are never written. The directories are
epath paths (mobilenet_jax/paths.py), so a gs:// workdir keeps its checkpoints in the bucket.
A resumed run starts from the newest checkpoint that restores: a damaged newer one is renamed
aside to `checkpoints/<step>.corrupt` (never deleted, its files untouched) with a warning."""
from __future__ import annotations

import logging
from typing import Optional

import orbax.checkpoint as ocp

from mobilenet_jax import paths
from mobilenet_jax.errors import UserError
from mobilenet_jax.train.state import TrainState, all_finite, state_from_dict, state_to_numpy

log = logging.getLogger("mobilenet_jax")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be restored (corrupt, or written by another config)."""


class Checkpoints:
    def __init__(self, workdir: paths.PathLike, keep: int = 3, keep_best: bool = True):
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
                    max_to_keep=1, best_fn=lambda m: m["accuracy"], best_mode="max", **opts
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

    def save_best(self, state: TrainState, accuracy: float) -> None:
        if self._best is None:
            return
        tree = self._numpy_checked(state)
        step = int(tree["step"])
        if step not in self._best.all_steps():
            self._best.save(step, args=ocp.args.StandardSave(tree), metrics={"accuracy": float(accuracy)})

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
