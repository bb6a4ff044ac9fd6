"""Building layers shared by every network: activations, channel rounding, conv + BN + act,
squeeze-excite.

Conventions (those of keras.applications, so that reference weights import exactly):
inputs are NHWC; convolutions feeding BatchNorm have no bias; BatchNorm epsilon is 1e-3;
'SAME' padding is TensorFlow's (for stride 2 on an even input: 0 before, 1 after), which is
what Keras's `correct_pad` + 'valid' computes.
"""
from __future__ import annotations

import functools
import math
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
    """
    return functools.partial(BatchNorm, momentum=momentum, epsilon=epsilon, axis_name=axis_name, dtype=dtype)


# --------------------------------------------------------------------------------------------
# BatchNorm (Ioffe & Szegedy 2015, Alg. 1) with the fewest passes over the activations
# --------------------------------------------------------------------------------------------


def _sum_pair(a: jax.Array, b: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """(sum a, sum b) over `axes`: sibling reductions of one input, which XLA fuses into one
    two-output reduction on GPU/TPU (multi-output fusion)."""
    return jnp.sum(a, axes), jnp.sum(b, axes)


def _count(x: jax.Array, axes: tuple[int, ...], axis_name: Optional[str]):
    """Elements per channel over `axes`, on all replicas of `axis_name`."""
    n = math.prod(x.shape[a] for a in axes)
    return n * lax.psum(1, axis_name) if axis_name is not None else n


def moments_one_pass(x: jax.Array, shift: jax.Array, axes: tuple[int, ...], axis_name: Optional[str] = None):
    """Mean and biased variance from one pass: sums of d = x - shift and d^2 (one two-output
    reduction; cross-replica, one psum of both). var = E[d^2] - E[d]^2 loses ~(mean - shift)^2
    / var of float32 precision: exact enough with the shift at the running mean, while the
    naive E[x^2] - E[x]^2 (shift = 0) fails where |mean| >> std."""
    d = x - shift
    s1, s2 = _sum_pair(d, d * d, axes)
    if axis_name is not None:
        s1, s2 = lax.psum((s1, s2), axis_name)
    n = _count(x, axes, axis_name)
    mean_d = s1 / n
    return shift + mean_d, jnp.maximum(s2 / n - mean_d * mean_d, 0.0)


def moments_two_pass(x: jax.Array, shift: jax.Array, axes: tuple[int, ...], axis_name: Optional[str] = None):
    """Mean, then E[(x - mean)^2]: two passes (and, cross-replica, two collectives)."""
    del shift
    mean = jnp.mean(x, axes)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
    var = jnp.mean(jnp.square(x - mean), axes)
    if axis_name is not None:
        var = lax.pmean(var, axis_name)
    return mean, var


def batch_moments(x: jax.Array, shift: jax.Array, axes: tuple[int, ...], axis_name: Optional[str] = None):
    """Batch mean and biased variance of float32 `x` over `axes` (and `axis_name`), in the
    form each backend runs fastest: one pass on GPU/TPU (the activations are read once), two
    on the CPU, where XLA vectorises a plain reduction about 2x better than one with a
    broadcast subtract inside (benchmarks/NOTES.md)."""
    one = functools.partial(moments_one_pass, axes=axes, axis_name=axis_name)
    two = functools.partial(moments_two_pass, axes=axes, axis_name=axis_name)
    return lax.platform_dependent(x, shift, cpu=two, default=one)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def batch_norm_train(x, scale, bias, shift, epsilon: float, axes: tuple[int, ...], axis_name: Optional[str]):
    """Training-mode BatchNorm: (y, batch mean, batch variance), statistics in float32.

    y = (x - mean) / sqrt(var + epsilon) * scale + bias in x's dtype. `shift` (the running
    mean, not differentiated) only steadies the one-pass statistics. The VJP is the textbook
    fused backward: one two-output reduction (sum dy, sum dy * xhat) and one elementwise pass;
    cross-replica, one psum of the two sums. The mean and variance outputs feed the running
    averages only and are not differentiated.
    """
    return _batch_norm_train_fwd(x, scale, bias, shift, epsilon, axes, axis_name)[0]


def _batch_norm_train_fwd(x, scale, bias, shift, epsilon, axes, axis_name):
    xf = x.astype(jnp.float32)
    mean, var = batch_moments(xf, lax.stop_gradient(shift), axes, axis_name)
    inv = lax.rsqrt(var + epsilon)
    y = ((xf - mean) * (scale * inv) + bias).astype(x.dtype)
    return (y, mean, var), (x, mean, inv, scale)


def _batch_norm_train_bwd(epsilon, axes, axis_name, residuals, cotangents):
    x, mean, inv, scale = residuals
    dy = cotangents[0].astype(jnp.float32)
    xhat = (x.astype(jnp.float32) - mean) * inv
    sum_dy, sum_dy_xhat = _sum_pair(dy, dy * xhat, axes)
    total_dy, total_dy_xhat = sum_dy, sum_dy_xhat
    if axis_name is not None:
        total_dy, total_dy_xhat = lax.psum((sum_dy, sum_dy_xhat), axis_name)
    n = _count(x, axes, axis_name)
    dx = (scale * inv) * (dy - total_dy / n - xhat * (total_dy_xhat / n))
    return dx.astype(x.dtype), sum_dy_xhat, sum_dy, jnp.zeros_like(mean)


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


class BatchNorm(nn.Module):
    """BatchNorm over all axes but the last (NHWC), with flax's `nn.BatchNorm` variables
    (`params`: scale, bias; `batch_stats`: mean, var) and semantics, so weights, checkpoints
    and Keras conversion are unchanged. Training uses `batch_norm_train` (one pass over the
    activations for the statistics on GPU/TPU, a fused custom backward); inference is
    (x - mean) * scale / sqrt(var + epsilon) + bias with the running statistics.
    """

    use_running_average: Optional[bool] = None
    momentum: float = 0.99
    epsilon: float = 1e-3
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(features, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(features, jnp.float32))
        scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
        x = x.astype(self.dtype)
        if use_running_average:
            inv = lax.rsqrt(ra_var.value + self.epsilon)
            y = (x.astype(jnp.float32) - ra_mean.value) * (scale * inv) + bias
            return y.astype(self.dtype)
        axes = tuple(range(x.ndim - 1))
        # Cross-replica only under pmap: `init` runs outside it (as flax's BatchNorm does).
        axis_name = None if self.is_initializing() else self.axis_name
        y, mean, var = batch_norm_train(x, scale, bias, ra_mean.value, self.epsilon, axes, axis_name)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        return y


def conv_kernel_init() -> Callable:
    """He-normal fan-out initialisation (torchvision's MobileNet initialisation)."""
    return nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")


DepthwiseImpl = Literal["auto", "shifted", "grouped"]
DEPTHWISE_IMPLS = ("auto", "shifted", "grouped")


def _shifted_depthwise(x: jax.Array, kernel: jax.Array, strides: int, pads, dilation: int = 1) -> jax.Array:
    """The sum of k*k strided slices of the padded input, each times one kernel tap: one
    elementwise fusion forward, elementwise + per-tap reductions backward. With `dilation`
    d (atrous convolution), tap (i, j) reads the input d*i rows and d*j columns further."""
    k = kernel.shape[0]
    span = (k - 1) * dilation + 1
    x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    out_h = (x.shape[1] - span) // strides + 1
    out_w = (x.shape[2] - span) // strides + 1
    out = None
    for i in range(k):
        for j in range(k):
            r, c = i * dilation, j * dilation
            tap = lax.slice(
                x, (0, r, c, 0),
                (x.shape[0], r + (out_h - 1) * strides + 1, c + (out_w - 1) * strides + 1, x.shape[3]),
                (1, strides, strides, 1),
            ) * kernel[i, j, 0]
            out = tap if out is None else out + tap
    return out


def _grouped_depthwise(x: jax.Array, kernel: jax.Array, strides: int, pads, dilation: int = 1) -> jax.Array:
    """XLA's grouped convolution (`feature_group_count` = channels, `rhs_dilation` for atrous
    convolution): cuDNN / the TPU's convolution unit, forward and backward."""
    return lax.conv_general_dilated(
        x, kernel, (strides, strides), [tuple(p) for p in pads],
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1],
    )


def _depthwise_forms(strides: int, pads, dilation: int = 1) -> tuple[Callable, Callable]:
    """(shifted, grouped): the two forms with the geometry bound."""
    return (functools.partial(_shifted_depthwise, strides=strides, pads=pads, dilation=dilation),
            functools.partial(_grouped_depthwise, strides=strides, pads=pads, dilation=dilation))


def _pullback(form: Callable) -> Callable:
    """(x, kernel, dy) -> (dx, dkernel) of one form, linearised inside the backward pass: the
    form's own saved values live and die there (XLA removes the forward's unused result)."""

    def pullback(x, kernel, dy):
        return jax.vjp(form, x, kernel)[1](dy)

    return pullback


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _depthwise_per_pass(x: jax.Array, kernel: jax.Array, strides: int, pads, impl: str,
                        dilation: int = 1) -> jax.Array:
    """The depthwise convolution whose forward and backward each take the target's form.

    Differentiating through `lax.platform_dependent` makes every branch return the residuals
    of all branches: lowered for CUDA, each call would carry zero-filled, activation-sized
    placeholders for the shifted form's saved values. Here the residuals are the inputs
    (x, kernel), the same for both forms, and each pass chooses its form by itself."""
    shifted, grouped = _depthwise_forms(strides, pads, dilation)
    if impl == "shifted":
        return shifted(x, kernel)
    if impl == "grouped":
        return grouped(x, kernel)
    return lax.platform_dependent(x, kernel, cpu=shifted, default=grouped)


def _depthwise_per_pass_fwd(x, kernel, strides, pads, impl, dilation):
    return _depthwise_per_pass(x, kernel, strides, pads, impl, dilation), (x, kernel)


def _depthwise_per_pass_bwd(strides, pads, impl, dilation, residuals, dy):
    x, kernel = residuals
    shifted, grouped = map(_pullback, _depthwise_forms(strides, pads, dilation))
    if impl == "shifted":
        return shifted(x, kernel, dy)
    if impl == "grouped":
        return grouped(x, kernel, dy)
    return lax.platform_dependent(x, kernel, dy, cpu=shifted, default=grouped)


_depthwise_per_pass.defvjp(_depthwise_per_pass_fwd, _depthwise_per_pass_bwd)


@functools.partial(jax.jit, static_argnames=("strides", "padding", "impl", "dilation"))
def depthwise_conv2d(
    x: jax.Array, kernel: jax.Array, strides: int = 1, padding: Padding = "SAME",
    impl: DepthwiseImpl = "auto", dilation: int = 1,
) -> jax.Array:
    """Depthwise 2-D convolution (MobileNets Sec. 3.1), in the form each backend runs fastest.

    x: [N, H, W, C]; kernel: [k, k, 1, C] (the layout of `nn.Conv` with
    `feature_group_count=C`); `dilation` d > 1 is atrous convolution (the taps d apart, a
    (k - 1) * d + 1 window; 'SAME' pads for that window). Both forms compute the same
    function (tested, values and gradients, dilated too):
    - 'shifted': k*k shifted, scaled copies summed. XLA:CPU's grouped convolution is 25x
      slower forward and 15x slower forward+backward over MobileNetV2-0.35's shapes.
    - 'grouped': XLA's grouped convolution. On an H100 the shifted form's backward (k*k
      kernel-gradient reductions) made forward+backward 1.7x slower than cuDNN's
      (`python -m benchmarks.depthwise`; both in benchmarks/NOTES.md). It is also the
      deployment form: TFLite's DEPTHWISE_CONV_2D (`mobilenet_jax.export` forces it).
    - 'auto' (default): 'shifted' when the computation is lowered for the CPU, 'grouped' for
      GPU and TPU (`lax.platform_dependent`: only the chosen form is compiled).
    The form is chosen separately in the forward and the backward pass of one custom VJP
    (`_depthwise_per_pass`), so no branch carries another branch's saved values.
    It is a named `jit` so that a traced model shows each depthwise conv as one equation
    (`sizes.is_depthwise`).
    """
    k = kernel.shape[0]
    if kernel.shape[:3] != (k, k, 1) or kernel.shape[3] != x.shape[-1]:
        raise ValueError(
            f"depthwise kernel must be [k, k, 1, channels={x.shape[-1]}], got {kernel.shape}"
        )
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
        raise ValueError(f"depthwise dilation must be an int >= 1, got {dilation!r}")
    span = (k - 1) * dilation + 1
    pads = lax.padtype_to_pads(x.shape[1:3], (span, span), (strides, strides), padding) if isinstance(padding, str) else padding
    pads = tuple(tuple(int(p) for p in pad) for pad in pads)
    return _depthwise_per_pass(x, kernel, strides, pads, impl, dilation)


class DepthwiseConv(nn.Module):
    """A k x k depthwise convolution without bias, parameter `kernel` [k, k, 1, C] exactly as
    `nn.Conv(C, (k, k), feature_group_count=C)` stores it (so weights convert unchanged).
    `dilation` > 1 spreads the taps (atrous convolution); the parameters do not change."""

    kernel_size: int = 3
    strides: int = 1
    padding: Padding = "SAME"
    dtype: Dtype = jnp.float32
    impl: DepthwiseImpl = "auto"
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", conv_kernel_init(), (self.kernel_size, self.kernel_size, 1, channels)
        )
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
        return depthwise_conv2d(x, kernel, strides=self.strides, padding=padding, impl=self.impl,
                                dilation=self.dilation)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation: the unit every MobileNet is made of.

    `groups == in_channels` with `features == in_channels * depth_multiplier` makes it a
    depthwise convolution (MobileNets Sec. 3.1). `dilation` > 1 makes it atrous (DeepLab's
    output-stride control; V2 Sec. 6.3, V3 Sec. 6.4). Parameters live at `conv/kernel` and
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
    depthwise_impl: DepthwiseImpl = "auto"
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.groups > 1 and self.groups == self.features == x.shape[-1]:
            x = DepthwiseConv(self.kernel_size, self.strides, self.padding, self.dtype,
                              self.depthwise_impl, self.dilation, name="conv")(x)
        else:
            x = nn.Conv(
                self.features,
                (self.kernel_size, self.kernel_size),
                strides=(self.strides, self.strides),
                padding=self.padding,
                kernel_dilation=(self.dilation, self.dilation),
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
