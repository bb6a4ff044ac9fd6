"""Shared by the weight-conversion tests: Keras reference models with random weights and
randomised, well-conditioned BatchNorm statistics, their logits, and fast compilation.

Random weights alone make a deep network's output independent of its input (the signal
dies in the depthwise layers), which would make "same logits" trivially true. So each
BatchNorm's moving statistics are first set from a batch of random images (Keras in
training mode, momentum 0), then randomised around them (mean +- 0.1 sd, variance x
[0.8, 1.25] plus a floor of 10% of the layer's mean variance), and gamma, beta and every
bias are drawn at random: logits are O(1) and vary with the input.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

from tests.keras_reference import keras_model  # noqa: E402

NUM_CLASSES = 10
#: Compiling deep graphs dominates the run time of these tests; LLVM's optimisation level
#: changes nothing in the arithmetic that matters here (float32 throughout).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def fast_jit(fn: Callable, *args: Any) -> Any:
    """`jax.jit(fn)(*args)`, compiled with cheap backend optimisation."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def keras_inputs(name: str, images: np.ndarray) -> np.ndarray:
    """Keras's input convention for our [-1, 1] images: MobileNetV3 rescales [0, 255]
    inside the network (`include_preprocessing=True`), the others take [-1, 1]."""
    return (images + 1.0) * 127.5 if name.startswith("mobilenet_v3") else images


def random_images(n: int, resolution: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, resolution, resolution, 3)).astype(np.float32)


def keras_logits(model: Any, x: np.ndarray, training: bool = False) -> Any:
    """Keras's own forward pass (`stateless_call`, compiled once)."""
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    out, new_ntv = fast_jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=training), tv, ntv, x)
    return (np.asarray(out), new_ntv) if training else np.asarray(out)


def _randomise(model: Any, name: str, resolution: int, seed: int) -> None:
    import keras

    rng = np.random.default_rng(seed)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in model.layers:
        for v in layer.weights:
            if v.name == "bias":
                v.assign(rng.normal(0.0, 0.1, v.shape).astype(np.float32))
    momenta = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    x = keras_inputs(name, random_images(8, resolution, seed + 1000))
    _, new_ntv = keras_logits(model, x, training=True)
    for v, value in zip(model.non_trainable_variables, new_ntv):
        v.assign(value)
    for layer, momentum in zip(bns, momenta):
        layer.momentum = momentum
        var = np.asarray(layer.moving_variance)
        var = (var + 0.1 * var.mean() + 1e-3) * rng.uniform(0.8, 1.25, var.shape)
        mean = np.asarray(layer.moving_mean) + rng.normal(0.0, 0.1, var.shape) * np.sqrt(var)
        layer.moving_variance.assign(var.astype(np.float32))
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.gamma.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32))
        layer.beta.assign(rng.normal(0.0, 0.2, var.shape).astype(np.float32))


@functools.lru_cache(maxsize=None)
def random_keras_model(name: str, resolution: int, seed: int = 0, **variant: Any) -> Any:
    """A keras.applications model (weights=None, NUM_CLASSES logits, no softmax) with every
    weight and BatchNorm statistic random; cached, never shared with other test modules."""
    model = keras_model.__wrapped__(
        name, resolution=resolution, classes=NUM_CLASSES, classifier_activation=None, **variant
    )
    _randomise(model, name, resolution, seed)
    return model
