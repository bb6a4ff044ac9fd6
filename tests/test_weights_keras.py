"""Keras weights into our networks compute Keras's function:
for every family at two widths (Keras has one Xception), a keras.applications model with
random weights and randomised BatchNorm statistics, converted, gives Keras's logits within
1e-4 in float32, inference mode. (bfloat16/float32 top-1 agreement is measured by
`python -m benchmarks.bf16_agreement`, not asserted: see its docstring.)
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import mobilenet_jax
from mobilenet_jax.weights import convert_keras, keras_layers, keras_model_overrides
from tests._keras_weights import (
    NUM_CLASSES, fast_jit, keras_inputs, keras_logits, random_images, random_keras_model,
)

#: (family, Keras variant, resolution). Resolutions 40 and 48 put odd feature maps under
#: stride-2 convs, where Keras's padding differs from 'SAME' (V1) or adapts to it (V2/V3).
CASES = [
    ("mobilenet_v1", dict(width=0.25), 32),
    ("mobilenet_v1", dict(width=0.5, depth_multiplier=2), 40),
    ("mobilenet_v2", dict(width=0.35), 48),
    ("mobilenet_v2", dict(width=1.3), 32),
    ("mobilenet_v3_large", dict(width=0.75), 32),
    ("mobilenet_v3_large", dict(width=1.0, minimalistic=True), 48),
    ("mobilenet_v3_small", dict(width=1.0), 48),
    ("mobilenet_v3_small", dict(width=0.75, minimalistic=True), 32),
    ("xception", dict(), 71),  # keras.applications.Xception has no width multiplier
]
TOLERANCE = 1e-4


def _id(case) -> str:
    name, variant, resolution = case
    return "-".join([name, *(f"{k}={v}" for k, v in variant.items()), str(resolution)])


def ours_for(name: str, variant: dict, **fields):
    return mobilenet_jax.create_model(
        name, num_classes=NUM_CLASSES, **variant, **keras_model_overrides(name), **fields
    )


def logits(model, variables, x):
    return np.asarray(fast_jit(lambda v, x: model.apply(v, x, train=False), variables, x))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_converted_logits_equal_keras(case):
    name, variant, resolution = case
    reference = random_keras_model(name, resolution, **variant)
    model = ours_for(name, variant)
    variables = convert_keras(reference, model)
    x = random_images(8, resolution, seed=1)
    want = keras_logits(reference, keras_inputs(name, x))
    got = logits(model, variables, x)
    diff = float(np.max(np.abs(got - want)))
    print(f"\n{_id(case)}: max |ours - keras| = {diff:.2e} (logit scale {np.abs(want).max():.2f})")
    assert want.std(axis=0).mean() > 1e-2, "reference logits do not depend on the input"
    assert diff <= TOLERANCE
    if name == "mobilenet_v3_small" and not variant.get("minimalistic"):
        # Keras's Rescaling layer, reproduced by our field: identical [0, 255] inputs.
        rescaled = logits(ours_for(name, variant, rescale_inputs=True), variables, keras_inputs(name, x))
        assert float(np.max(np.abs(rescaled - want))) <= TOLERANCE


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_map_lists_keras_layers_in_keras_order(case):
    """The explicit map names every Keras layer with weights, in `model.layers` order."""
    name, variant, resolution = case
    reference = random_keras_model(name, resolution, **variant)
    keras_side = [(layer.name, type(layer).__name__) for layer in reference.layers if layer.weights]
    spec = keras_layers(ours_for(name, variant))
    assert len(spec) == len(keras_side)
    for s, (keras_name, keras_class) in zip(spec, keras_side):
        assert s.class_name == keras_class, (s, keras_name)
        if s.name is None:  # Keras's automatic names (Xception shortcuts)
            assert re.fullmatch(r"(conv2d|batch_normalization)(_\d+)?", keras_name)
        else:
            assert s.name == keras_name


