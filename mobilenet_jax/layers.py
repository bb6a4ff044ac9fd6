"""Building layers shared by every network: activations, channel rounding, conv + BN + act,
squeeze-excite.

Conventions (those of keras.applications, so that reference weights import exactly):
inputs are NHWC; convolutions feeding BatchNorm have no bias; BatchNorm epsilon is 1e-3;
'SAME' padding is TensorFlow's (for stride 2 on an even input: 0 before, 1 after), which is
what Keras's `correct_pad` + 'valid' computes.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Literal, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any
ModuleDef = Any
Padding = Union[str, Sequence[tuple[int, int]]]

# --------------------------------------------------------------------------------------------
# Activations (MobileNetV3 Sec. 5.2)
# --------------------------------------------------------------------------------------------


def relu6(x: jax.Array) -> jax.Array:
    """min(max(x, 0), 6): MobileNetV2 Sec. 3.1, robust under low-precision arithmetic."""
    return jnp.clip(x, 0.0, 6.0)


def hard_sigmoid(x: jax.Array) -> jax.Array:
    """ReLU6(x + 3) / 6: the piecewise-linear sigmoid of MobileNetV3 Sec. 5.2."""
    return relu6(x + 3.0) * (1.0 / 6.0)


def hard_swish(x: jax.Array) -> jax.Array:
    """h-swish(x) = x * ReLU6(x + 3) / 6 (MobileNetV3 Eq. 2)."""
    return x * hard_sigmoid(x)


def identity(x: jax.Array) -> jax.Array:
    return x


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "relu6": relu6,
    "hard_swish": hard_swish,
    "hard_sigmoid": hard_sigmoid,
    "elu": nn.elu,
    "linear": identity,
    "none": identity,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks an activation up by name; raises a ValueError that lists the known names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Channel rounding
# --------------------------------------------------------------------------------------------


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Rounds `value` to the nearest multiple of `divisor`, never going more than 10% down.

    This is the rounding of the TF-slim / Keras / torchvision MobileNetV2 and V3 code
    (`_make_divisible`); it keeps channel counts friendly to vector units.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def batch_norm(
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    axis_name: Optional[str] = None,
    dtype: Dtype = jnp.float32,
) -> ModuleDef:
    """A BatchNorm constructor with the reference settings (Keras epsilon 1e-3).

    `momentum` is the decay of the moving averages (Keras `momentum`, TF `decay`);
    `axis_name` (e.g. "batch" under `jax.pmap`) makes the statistics cross-replica.
    Blocks call it as `norm(use_running_average=not train, name=...)`.

    The batch variance is two-pass, mean((x - mean)^2), as Keras computes it; the one-pass
    E[x^2] - E[x]^2 cancels in float32 when |mean| >> std (one more reduction is the cost).
    """
    return functools.partial(
        nn.BatchNorm, momentum=momentum, epsilon=epsilon, axis_name=axis_name, dtype=dtype,
        use_fast_variance=False,
    )


def conv_kernel_init() -> Callable:
    """He-normal fan-out initialisation (torchvision's MobileNet initialisation)."""
    return nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")


@functools.partial(jax.jit, static_argnames=("strides", "padding"))
def depthwise_conv2d(x: jax.Array, kernel: jax.Array, strides: int = 1, padding: Padding = "SAME") -> jax.Array:
    """Depthwise 2-D convolution (MobileNets Sec. 3.1) as a sum of k*k shifted, scaled copies.

    x: [N, H, W, C]; kernel: [k, k, 1, C] (the layout of `nn.Conv` with
    `feature_group_count=C`). Computes exactly what `lax.conv_general_dilated` with
    `feature_group_count=C` computes, but as one elementwise fusion that XLA compiles well on
    every backend, and whose gradient is elementwise too; XLA:CPU's grouped convolution is
    25x slower forward and 15x slower forward+backward over MobileNetV2-0.35's depthwise
    shapes (`python -m benchmarks.depthwise`, results in benchmarks/NOTES.md). It is a named `jit` so
    that a traced model shows each depthwise conv as one equation (`profile.is_depthwise`).
    """
    k = kernel.shape[0]
    if kernel.shape[:3] != (k, k, 1) or kernel.shape[3] != x.shape[-1]:
        raise ValueError(
            f"depthwise kernel must be [k, k, 1, channels={x.shape[-1]}], got {kernel.shape}"
        )
    pads = lax.padtype_to_pads(x.shape[1:3], (k, k), (strides, strides), padding) if isinstance(padding, str) else padding
    x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    out_h = (x.shape[1] - k) // strides + 1
    out_w = (x.shape[2] - k) // strides + 1
    out = None
    for i in range(k):
        for j in range(k):
            tap = lax.slice(
                x, (0, i, j, 0),
                (x.shape[0], i + (out_h - 1) * strides + 1, j + (out_w - 1) * strides + 1, x.shape[3]),
                (1, strides, strides, 1),
            ) * kernel[i, j, 0]
            out = tap if out is None else out + tap
    return out


class DepthwiseConv(nn.Module):
    """A k x k depthwise convolution without bias, parameter `kernel` [k, k, 1, C] exactly as
    `nn.Conv(C, (k, k), feature_group_count=C)` stores it (so weights convert unchanged)."""

    kernel_size: int = 3
    strides: int = 1
    padding: Padding = "SAME"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", conv_kernel_init(), (self.kernel_size, self.kernel_size, 1, channels)
        )
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
        return depthwise_conv2d(x, kernel, strides=self.strides, padding=padding)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation: the unit every MobileNet is made of.

    `groups == in_channels` with `features == in_channels * depth_multiplier` makes it a
    depthwise convolution (MobileNets Sec. 3.1). Parameters live at `conv/kernel` and
    `bn/{scale,bias}`.
    """

    features: int
    kernel_size: int = 1
    strides: int = 1
    groups: int = 1
    activation: str = "relu6"
    padding: Padding = "SAME"
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.groups > 1 and self.groups == self.features == x.shape[-1]:
            x = DepthwiseConv(self.kernel_size, self.strides, self.padding, self.dtype, name="conv")(x)
        else:
            x = nn.Conv(
                self.features,
                (self.kernel_size, self.kernel_size),
                strides=(self.strides, self.strides),
                padding=self.padding,
                feature_group_count=self.groups,
                use_bias=False,
                dtype=self.dtype,
                kernel_init=conv_kernel_init(),
                name="conv",
            )(x)
        x = self.norm(use_running_average=not train, name="bn")(x)
        return get_activation(self.activation)(x)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite with a hard-sigmoid gate (MobileNetV3 Sec. 5.3, Fig. 4).

    Global average pool -> 1x1 conv to `squeeze_features` + ReLU -> 1x1 conv back +
    hard sigmoid -> channel-wise scale. Both 1x1 convs have biases (as in Keras/torchvision).
    """

    squeeze_features: int
    gate: str = "hard_sigmoid"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.Conv(self.squeeze_features, (1, 1), dtype=self.dtype, name="reduce")(s)
        s = nn.relu(s)
        s = nn.Conv(features, (1, 1), dtype=self.dtype, name="expand")(s)
        return x * get_activation(self.gate)(s)
