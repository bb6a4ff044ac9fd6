"""The per-device train step, task-blind, written against the device axis `AXIS` ("batch")
and compiled with `jax.pmap` (flax examples/imagenet style): the state goes in and comes out
unreplicated (in_axes=None / out_axes=None), batches are mapped over their leading (local
device) axis. The task supplies the loss (`mobilenet_jax.tasks`); cross-replica BatchNorm
comes from the model (bn_axis_name=AXIS); gradients and metrics are averaged with
`lax.pmean`; dropout RNG is folded with the step and the device index. Pure functions: nothing
but the arguments determines the result.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from mobilenet_jax.data.pipeline import AXIS
from mobilenet_jax.tasks import LossFn, Metrics
from mobilenet_jax.train.state import TrainState


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """TF ExponentialMovingAverage(decay, num_updates=step): min(decay, (1+t)/(10+t))."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    loss_fn: LossFn,
    ema_decay: float = 0.0,
    ema_warmup: bool = True,
    dropout_seed: int = 0,
) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
    """The per-device training step `(state, batch) -> (state, metrics)`; call it under
    `pmap_train_step` (it uses the `AXIS` axis). `loss_fn` is the task's loss (`Task.loss_fn()`);
    the metrics are its metrics and "loss", averaged over the devices, plus "grad_norm" and
    "learning_rate"."""

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(dropout_seed), state.step),
                                 lax.axis_index(AXIS))

        def objective(params):
            outputs, new_vars = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, batch["image"],
                train=True, mutable=["batch_stats"], rngs={"dropout": rng},
            )
            loss, task_metrics = loss_fn(outputs, batch)
            return loss, (task_metrics, new_vars["batch_stats"])

        (loss, (task_metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        grads = lax.pmean(grads, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if ema is not None:
            d = ema_decay_at(state.step, ema_decay, ema_warmup)
            ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
        metrics = lax.pmean({"loss": loss, **task_metrics}, AXIS)
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats,
            opt_state=opt_state, ema_params=ema,
        )
        return new_state, metrics

    return train_step


def pmap_train_step(train_step: Callable) -> Callable:
    """`jax.pmap` of a per-device train step: state broadcast in and returned once
    (identical on all devices after pmean), batch mapped over local devices."""
    return jax.pmap(train_step, axis_name=AXIS, in_axes=(None, 0), out_axes=(None, None),
                    donate_argnums=(0,))
