"""The papers' optimizers and learning-rate schedules, in optax.

Recipes (see configs/ and docs/papers.md "Training recipes"):
  V1 (Sec. 3.2), V2 (Sec. 6.1): TF RMSProp, decay = momentum = 0.9, weight decay 4e-5
    (V1: "very little or no weight decay on the depthwise filters"); V2: lr 0.045 x 0.98
    per epoch.
  V3 (Sec. 6.1.1): TF RMSProp, momentum 0.9, lr 0.1 at batch 4096, staircase decay every
    3 epochs, weight decay 1e-5, EMA 0.9999.
  Xception (Sec. 4.3): SGD momentum 0.9, lr 0.045 x 0.94 every 2 epochs, weight decay 1e-5.

TF1 `RMSPropOptimizer` (what the MobileNet papers used) differs from Keras' RMSprop in two
ways that `tf_rmsprop` reproduces: the mean-square accumulator starts at 1.0, not 0, and
epsilon is added inside the square root: ms = d*ms + (1-d)*g^2;
mom = m*mom + lr*g/sqrt(ms + eps); w -= mom.
Weight decay is the TF-slim L2 regulariser (wd/2 * ||w||^2 in the loss, i.e. wd*w added to
the gradient before the optimizer), on conv/dense kernels only by default.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mobilenet_jax.train.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Durations:
    """Training length and schedule lengths in steps, resolved from steps or epochs."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def resolve_durations(config: ml_collections.ConfigDict, steps_per_epoch: int) -> Durations:
    """`*_steps >= 0` wins over `*_epochs` (big_vision style: either unit works)."""
    if steps_per_epoch < 1:
        raise ConfigError(
            f"steps_per_epoch={steps_per_epoch}: the training split is smaller than one batch "
            f"(config.batch_size={config.batch_size}); lower the batch size or use more data"
        )
    total = (
        config.num_train_steps
        if config.num_train_steps >= 0
        else int(round(config.num_epochs * steps_per_epoch))
    )
    warmup = (
        config.warmup_steps
        if config.warmup_steps >= 0
        else int(round(config.warmup_epochs * steps_per_epoch))
    )
    return Durations(steps_per_epoch, total, min(warmup, total))


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
    """config.learning_rate, linearly rescaled when lr_base_batch_size > 0 (Goyal et al.)."""
    if config.lr_base_batch_size > 0:
        return config.learning_rate * config.batch_size / config.lr_base_batch_size
    return config.learning_rate


def learning_rate_schedule(
    config: ml_collections.ConfigDict, durations: Durations
) -> optax.Schedule:
    """Linear warmup from 0, then constant / exponential (smooth or staircase) / cosine.

    Exponential decay multiplies by `lr_decay_rate` every `lr_decay_epochs` epochs (V2: 0.98
    every epoch; V3: every 3 epochs; Xception: 0.94 every 2 epochs), counted from the end
    of warmup; `lr_staircase` makes it piecewise constant as TF's `staircase=True`.
    """
    peak = peak_learning_rate(config)
    decay_steps = max(durations.total_steps - durations.warmup_steps, 1)
    if config.lr_schedule == "constant":
        main = optax.constant_schedule(peak)
    elif config.lr_schedule == "exponential":
        main = optax.exponential_decay(
            peak,
            transition_steps=max(int(round(config.lr_decay_epochs * durations.steps_per_epoch)), 1),
            decay_rate=config.lr_decay_rate,
            staircase=config.lr_staircase,
        )
    elif config.lr_schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps, alpha=config.lr_end_factor)
    else:
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
    if durations.warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, durations.warmup_steps)
    return optax.join_schedules([warmup, main], [durations.warmup_steps])


def tf_rmsprop(
    learning_rate: float | optax.Schedule,
    decay: float = 0.9,
    momentum: float = 0.9,
    epsilon: float = 1.0,
    initial_scale: float = 1.0,
) -> optax.GradientTransformation:
    """TF1 `tf.train.RMSPropOptimizer` (see the module docstring for the update)."""
    return optax.rmsprop(
        learning_rate, decay=decay, eps=epsilon, initial_scale=initial_scale,
        eps_in_sqrt=True, centered=False, momentum=momentum if momentum > 0 else None,
    )


def is_depthwise_kernel(path: tuple[str, ...], leaf: jax.Array) -> bool:
    """A depthwise conv kernel: [kh, kw, 1, C] under a module named '...depthwise...'
    (the naming of mobilenet_jax.blocks), or any [kh, kw, 1, C] kernel with kh*kw > 1."""
    if path[-1] != "kernel" or leaf.ndim != 4 or leaf.shape[2] != 1:
        return False
    return any("depthwise" in p for p in path) or leaf.shape[0] * leaf.shape[1] > 1


def weight_decay_mask(
    params: Any, *, exclude_depthwise: bool, exclude_bn_and_bias: bool
) -> Any:
    """True where L2 weight decay applies: kernels, optionally not depthwise ones; BN
    scale/bias and biases only when `exclude_bn_and_bias` is False."""

    def decide(path, leaf) -> bool:
        names = tuple(getattr(k, "key", getattr(k, "name", str(k))) for k in path)
        if names[-1] != "kernel":
            return not exclude_bn_and_bias
        return not (exclude_depthwise and is_depthwise_kernel(names, leaf))

    return jax.tree_util.tree_map_with_path(decide, params)


def cooled(schedule: optax.Schedule, start: int, steps: int) -> optax.Schedule:
    """`schedule` times a linear decay from 1 at step `start` to 0 at `start + steps` (the
    cool-down after a plateau, config.plateau_cooldown_steps)."""
    def cooled_schedule(step):
        return schedule(step) * jnp.clip(1.0 - (step - start) / steps, 0.0, 1.0)

    return cooled_schedule


def reduced(schedule: optax.Schedule, steps: Sequence[int], factor: float) -> optax.Schedule:
    """`schedule` times `factor` once for each of `steps` at or before the step: the rate
    reduced at each plateau but the last (config.plateau_decays, config.plateau_decay_factor).
    Step s is the update count, so a reduction at step s applies from update s + 1 on."""
    if not steps:
        return schedule
    boundaries = jnp.asarray(steps, dtype=jnp.int32)

    def reduced_schedule(step):
        return schedule(step) * factor ** jnp.sum(step >= boundaries)

    return reduced_schedule


def build_optimizer(
    config: ml_collections.ConfigDict, durations: Durations, cooldown_from: int | None = None,
    reduced_at: Sequence[int] = (),
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, learning-rate schedule) of a config; the optimizer includes L2 decay
    and, when `grad_clip_norm > 0`, global-norm clipping (before the decay term). With
    `reduced_at`, the rate is multiplied by config.plateau_decay_factor from each of those
    steps; with `cooldown_from`, the schedule decays to 0 over config.plateau_cooldown_steps
    from that step (the optimizer state keeps its structure, so a running state carries over)."""
    schedule = reduced(learning_rate_schedule(config, durations), reduced_at, config.plateau_decay_factor)
    if cooldown_from is not None:
        schedule = cooled(schedule, cooldown_from, config.plateau_cooldown_steps)
    parts = []
    if config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if config.weight_decay > 0:
        parts.append(
            optax.add_decayed_weights(
                config.weight_decay,
                mask=lambda p: weight_decay_mask(
                    p,
                    exclude_depthwise=config.weight_decay_exclude_depthwise,
                    exclude_bn_and_bias=config.weight_decay_exclude_bn_and_bias,
                ),
            )
        )
    if config.optimizer == "rmsprop":
        parts.append(
            tf_rmsprop(
                schedule, decay=config.rmsprop_decay, momentum=config.momentum,
                epsilon=config.rmsprop_epsilon, initial_scale=config.rmsprop_initial_scale,
            )
        )
    elif config.optimizer == "sgd":
        parts.append(
            optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
        )
    elif config.optimizer == "adam":  # short detection runs (configs/detection_embedded.py)
        parts.append(optax.adam(schedule))
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    return optax.chain(*parts), schedule

