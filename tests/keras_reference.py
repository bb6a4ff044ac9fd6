"""keras.applications as the reference implementation (keras 3, JAX backend; test-only).

Building a Keras model costs seconds, so every builder is cached for the whole test session:
tests that need the same reference share one instance.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
from typing import Any, Iterator, Optional

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

#: Our registry name -> keras.applications constructor name.
KERAS_CONSTRUCTORS = {
    "mobilenet_v1": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_large": "MobileNetV3Large",
    "mobilenet_v3_small": "MobileNetV3Small",
    "xception": "Xception",
}


@contextlib.contextmanager
def numpy_initializers(seed: int = 0) -> Iterator[None]:
    """Draws Keras's random initial weights with numpy instead of jax.random.

    With the JAX backend every weight shape compiles its own `jax.random` kernel (about
    0.3 s each, minutes per test session); the reference weights only need to be random.
    """
    from keras.src.backend import random as backend_random

    rng = np.random.default_rng(seed)
    saved = {name: getattr(backend_random, name) for name in ("uniform", "normal", "truncated_normal")}

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        return np.asarray(rng.uniform(minval, maxval, size=shape), dtype=dtype or "float32")

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return np.asarray(rng.normal(mean, stddev, size=shape), dtype=dtype or "float32")

    def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        values = rng.normal(0.0, 1.0, size=shape)
        while np.any(bad := np.abs(values) > 2.0):
            values[bad] = rng.normal(0.0, 1.0, size=int(bad.sum()))
        return np.asarray(mean + stddev * values, dtype=dtype or "float32")

    backend_random.uniform, backend_random.normal, backend_random.truncated_normal = uniform, normal, truncated_normal
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(backend_random, name, fn)


@functools.lru_cache(maxsize=None)
def keras_model(
    name: str,
    width: float = 1.0,
    resolution: int = 224,
    classes: int = 1000,
    minimalistic: bool = False,
    depth_multiplier: int = 1,
    classifier_activation: Optional[str] = "softmax",
) -> Any:
    """A keras.applications model with random weights (`weights=None`), cached."""
    import keras

    constructor = getattr(keras.applications, KERAS_CONSTRUCTORS[name])
    kwargs: dict[str, Any] = dict(
        weights=None,
        input_shape=(resolution, resolution, 3),
        classes=classes,
        classifier_activation=classifier_activation,
    )
    if name != "xception":
        kwargs["alpha"] = width
    if name == "mobilenet_v1":
        kwargs["depth_multiplier"] = depth_multiplier
    if name.startswith("mobilenet_v3"):
        kwargs["minimalistic"] = minimalistic
    with numpy_initializers():
        return constructor(**kwargs)


def trainable_count(model: Any) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def non_trainable_count(model: Any) -> int:
    return int(sum(np.prod(w.shape) for w in model.non_trainable_weights))


def keras_madds(model: Any) -> int:
    """Multiply-adds of one image under the papers' convention, from Keras's layer shapes:
    Conv2D, DepthwiseConv2D, SeparableConv2D and Dense; nothing else."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)):
            out = layer.output.shape[1:]
            cin = layer.input.shape[-1]
            if isinstance(layer, keras.layers.Dense):
                total += cin * out[-1]
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                kh, kw = layer.kernel_size
                total += int(np.prod(out)) * kh * kw
            elif isinstance(layer, keras.layers.SeparableConv2D):
                kh, kw = layer.kernel_size
                total += int(np.prod(out[:2])) * cin * kh * kw + int(np.prod(out)) * cin
            else:
                kh, kw = layer.kernel_size
                total += int(np.prod(out)) * kh * kw * cin // layer.groups
    return total


def numbered(prefix: str, model: Any) -> list[Any]:
    """Layers auto-named `prefix`, `prefix_1`, ... in creation order (Keras's shortcut
    layers in Xception have no explicit names; their suffixes depend on the session)."""
    pattern = re.compile(rf"^{prefix}(?:_(\d+))?$")
    found = [(int(m.group(1) or 0), layer) for layer in model.layers if (m := pattern.match(layer.name))]
    return [layer for _, layer in sorted(found, key=lambda t: t[0])]
