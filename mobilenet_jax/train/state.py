"""TrainState: everything a run needs to continue, kept unreplicated (one copy per process;
`jax.pmap` broadcasts it with in_axes=None), so checkpoints restore onto any device count."""
from __future__ import annotations

from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


@flax.struct.dataclass
class TrainState:
    """step: updates applied so far; params: float32 weights; batch_stats: BN moving
    statistics; opt_state: the optax state; ema_params: exponential moving average of the
    weights (None when config.ema_decay == 0), used for evaluation when present."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Optional[Any]

    @property
    def eval_params(self) -> Any:
        return self.params if self.ema_params is None else self.ema_params


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    image_size: int,
    use_ema: bool,
) -> TrainState:
    """Initialises the model (jitted: eager init of a deep network is slow) and the optimizer.

    Only `model.init` is compiled: its program depends on the network and the image size alone,
    so every run of one network shares one entry of the persistent compilation cache, whatever
    its optimizer; the optimizer's and the EMA's initial state are zeros and copies (copies,
    not the same buffers: the train step donates the state)."""
    @jax.jit
    def init_variables(key):
        return model.init({"params": key}, jnp.zeros((1, image_size, image_size, 3)), train=False)

    variables = init_variables(rng)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=jax.jit(tx.init)(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params) if use_ema else None,
    )


def state_to_numpy(state: TrainState) -> dict:
    """The state as a nested dict of host numpy arrays (the checkpoint format)."""
    return jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(state))


def state_from_dict(template: TrainState, restored: dict) -> TrainState:
    """Fills `template`'s structure with restored arrays; raises ValueError naming the
    first leaf whose shape or dtype differs (a checkpoint of another model or config)."""
    expected = flax.serialization.to_state_dict(template)
    exp_leaves = jax.tree_util.tree_flatten_with_path(expected)[0]
    got_leaves, got_tree = jax.tree_util.tree_flatten_with_path(restored)
    exp_tree = jax.tree_util.tree_structure(expected)
    if exp_tree != got_tree:
        raise ValueError(
            f"checkpoint tree differs from the model's: {len(got_leaves)} leaves vs "
            f"{len(exp_leaves)} expected (another model, optimizer or ema setting?)"
        )
    for (path, want), (_, got) in zip(exp_leaves, got_leaves):
        if tuple(np.shape(want)) != tuple(np.shape(got)):
            raise ValueError(
                f"checkpoint leaf {jax.tree_util.keystr(path)} has shape {np.shape(got)}, "
                f"the model expects {np.shape(want)}"
            )
    return flax.serialization.from_state_dict(template, restored)


def all_finite(tree: Any) -> bool:
    """True when every float leaf of `tree` is finite (checked before any checkpoint). On the
    host, in numpy: the trees checked are checkpoints' host copies, and a jitted check would
    compile one program per tree structure (seconds on a CPU) for a few microseconds of work."""
    for leaf in jax.tree_util.tree_leaves(tree):
        x = np.asarray(leaf)
        if jnp.issubdtype(x.dtype, jnp.floating) and not np.isfinite(x).all():
            return False
    return True
