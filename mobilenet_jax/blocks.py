"""The blocks of the four papers, as flax.linen Modules.

- `DepthwiseSeparable`: MobileNets (V1) Sec. 3.1, Fig. 3.
- `InvertedResidual`: MobileNetV2 Sec. 3.3 / Table 1 (linear bottleneck), and its MobileNetV3
  form (Sec. 5: kernel 3 or 5, squeeze-excite, h-swish).
- `SeparableConvBN` and `XceptionModule`: Xception Sec. 3, Fig. 5.

Parameter names follow one scheme (`<unit>/conv/kernel`, `<unit>/bn/scale`, ...) so that
reference weights map onto them with an explicit table (see `mobilenet_jax.weights`).
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.layers import (
    ConvBN,
    DepthwiseConv,
    Dtype,
    ModuleDef,
    Padding,
    SqueezeExcite,
    batch_norm,
    DepthwiseImpl,
    conv_kernel_init,
    get_activation,
)

ShortcutKind = Literal["bottleneck", "expansion", "none"]
SHORTCUT_KINDS = ("bottleneck", "expansion", "none")


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + act, then 1x1 pointwise conv + BN + act (V1 Fig. 3 right).

    `depth_multiplier` is the number of depthwise outputs per input channel (Keras's
    `depth_multiplier`; V1's width multiplier applies to `features` instead).
    `padding` applies to the depthwise conv: 'SAME', or explicit pairs such as Keras's
    ((0, 1), (0, 1)) for stride 2.
    """

    features: int
    strides: int = 1
    depth_multiplier: int = 1
    activation: str = "relu6"
    padding: Padding = "SAME"
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32
    depthwise_impl: DepthwiseImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        in_features = x.shape[-1]
        x = ConvBN(
            in_features * self.depth_multiplier,
            kernel_size=3,
            strides=self.strides,
            groups=in_features,
            activation=self.activation,
            padding=self.padding,
            norm=self.norm,
            dtype=self.dtype,
            depthwise_impl=self.depthwise_impl,
            name="depthwise",
        )(x, train)
        return ConvBN(
            self.features,
            activation=self.activation,
            norm=self.norm,
            dtype=self.dtype,
            name="pointwise",
        )(x, train)


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (V2 Table 1; V3 Fig. 4).

    1x1 expansion to `expanded_features` (skipped when that equals the input width, as in the
    first block of V2 and V3) -> k x k depthwise with stride -> optional squeeze-excite on the
    expanded features (V3) -> 1x1 projection to `out_features` with `bottleneck_activation`
    ('linear' in the paper; 'relu6' is the V2 Fig. 6a ablation).

    `shortcut` (V2 Fig. 6b):
    - 'bottleneck' (paper): add the input to the output when stride is 1 and widths match.
    - 'expansion': the shortcut joins expanded layers instead; the caller passes the previous
      block's expanded tensor as `expanded_residual`, which is added to this block's
      expansion (after its activation) when the shapes match, and gets this block's
      expanded tensor back with `return_expanded=True`.
    - 'none': no additions at all.

    `dilation` > 1 makes the depthwise convolution atrous (a backbone at output stride 16 or
    8: V2 Sec. 6.3, V3 Sec. 6.4); the parameters do not change.
    """

    expanded_features: int
    out_features: int
    kernel_size: int = 3
    strides: int = 1
    dilation: int = 1
    activation: str = "relu6"
    bottleneck_activation: str = "linear"
    se_features: Optional[int] = None
    shortcut: ShortcutKind = "bottleneck"
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32
    depthwise_impl: DepthwiseImpl = "auto"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        train: bool = False,
        expanded_residual: Optional[jax.Array] = None,
        return_expanded: bool = False,
    ):
        inputs = x
        in_features = x.shape[-1]
        if self.expanded_features != in_features:
            x = ConvBN(
                self.expanded_features,
                activation=self.activation,
                norm=self.norm,
                dtype=self.dtype,
                name="expand",
            )(x, train)
        if expanded_residual is not None:
            if self.shortcut != "expansion":
                raise ValueError("expanded_residual is only used with shortcut='expansion'")
            if expanded_residual.shape == x.shape:
                x = x + expanded_residual
        expanded = x
        x = ConvBN(
            self.expanded_features,
            kernel_size=self.kernel_size,
            strides=self.strides,
            groups=self.expanded_features,
            activation=self.activation,
            norm=self.norm,
            dtype=self.dtype,
            depthwise_impl=self.depthwise_impl,
            dilation=self.dilation,
            name="depthwise",
        )(x, train)
        if self.se_features is not None:
            x = SqueezeExcite(self.se_features, dtype=self.dtype, name="squeeze_excite")(x)
        x = ConvBN(
            self.out_features,
            activation=self.bottleneck_activation,
            norm=self.norm,
            dtype=self.dtype,
            name="project",
        )(x, train)
        if self.shortcut == "bottleneck" and self.strides == 1 and in_features == self.out_features:
            x = x + inputs
        return (x, expanded) if return_expanded else x


class SeparableConvBN(nn.Module):
    """Xception's SeparableConv + BN (+ activation): depthwise 3x3 (multiplier 1), then
    pointwise 1x1, then BatchNorm.

    `intermediate_activation` sits between the depthwise and pointwise steps: 'none' in the
    paper (Sec. 3); 'relu' and 'elu' are the Fig. 10 ablation. Parameters are
    `depthwise/kernel`, `pointwise/kernel`, `bn/{scale,bias}`.
    """

    features: int
    activation: str = "linear"
    intermediate_activation: str = "none"
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32
    depthwise_impl: DepthwiseImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        in_features = x.shape[-1]
        x = DepthwiseConv(3, dtype=self.dtype, impl=self.depthwise_impl, name="depthwise")(x)
        x = get_activation(self.intermediate_activation)(x)
        x = nn.Conv(
            self.features,
            (1, 1),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=conv_kernel_init(),
            name="pointwise",
        )(x)
        x = self.norm(use_running_average=not train, name="bn")(x)
        return get_activation(self.activation)(x)


class XceptionModule(nn.Module):
    """One of Xception's 12 residual modules (Fig. 5): [ReLU -> SeparableConv -> BN] per
    entry of `features`, then an optional 3x3 stride-2 max pool, plus the shortcut.

    `shortcut`: 'conv' (strided 1x1 conv + BN, entry and exit flow), 'identity' (middle
    flow), or 'none' (the non-residual network of Fig. 9). `activate_input=False` drops the
    first ReLU (the first entry-flow module follows a conv that already applied one).
    """

    features: Sequence[int]
    pool: bool = False
    shortcut: Literal["conv", "identity", "none"] = "identity"
    activate_input: bool = True
    intermediate_activation: str = "none"
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32
    depthwise_impl: DepthwiseImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        inputs = x
        for i, features in enumerate(self.features):
            if i > 0 or self.activate_input:
                x = nn.relu(x)
            x = SeparableConvBN(
                features,
                intermediate_activation=self.intermediate_activation,
                norm=self.norm,
                dtype=self.dtype,
                depthwise_impl=self.depthwise_impl,
                name=f"sepconv_{i}",
            )(x, train)
        strides = 2 if self.pool else 1
        if self.pool:
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        if self.shortcut == "conv":
            x = x + ConvBN(
                self.features[-1],
                strides=strides,
                activation="linear",
                norm=self.norm,
                dtype=self.dtype,
                name="shortcut",
            )(inputs, train)
        elif self.shortcut == "identity":
            x = x + inputs
        return x
