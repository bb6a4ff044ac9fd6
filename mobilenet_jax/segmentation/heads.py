"""Segmentation heads on a backbone's named feature maps (`common.feature_strides`).

- `LRASPPHead`: Lite R-ASPP, MobileNetV3 Sec. 6.4 / Fig. 10.
- `ASPP` and `DeepLabHead`: DeepLabv3's atrous spatial pyramid pooling; `atrous_rates=()`
  is MobileNetV2 Sec. 6.3's reduced form (only the 1x1 and image-pooling branches).

Convolutions feeding BatchNorm have no bias; classifiers are 1x1 convs with bias (as in
torchvision). Upsampling is `resize_bilinear`.
"""
from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.layers import ConvBN, Dtype, ModuleDef, batch_norm, conv_kernel_init

GatePooling = Literal["global", "paper"]
GATE_POOLINGS = ("global", "paper")
#: V3 Sec. 6.4: the gate's "large pooling kernel with a large stride" (49x49, stride (16, 20),
#: chosen for Cityscapes' 1024x2048 inputs: a 1x4 gate on their 64x128 1/16 map).
PAPER_GATE_WINDOW = (49, 49)
PAPER_GATE_STRIDES = (16, 20)


def _axis_weights(size_in: int, size_out: int):
    """Source indices (i0, i1) and weight of i1 per output position: half-pixel centres,
    clamped at the border (PyTorch's `align_corners=False`, TF2's `resize(bilinear)`)."""
    dst = np.arange(size_out, dtype=np.float32)
    src = np.maximum((dst + 0.5) * np.float32(size_in / size_out) - 0.5, 0.0).astype(np.float32)
    i0 = np.minimum(np.floor(src).astype(np.int32), size_in - 1)
    i1 = np.minimum(i0 + 1, size_in - 1)
    return i0, i1, src - i0


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of NHWC `x` to `size` (height, width), as torchvision's segmentation
    models upsample (`F.interpolate(..., 'bilinear', align_corners=False)`).

    Gathers and a weighted sum, not `jax.image.resize` (whose matmuls `sizes` would count
    as multiply-adds: the papers count none for resizing); for upsampling the two agree. The
    indices are constants known to be in range (numpy, `promise_in_bounds`): no bounds checks
    reach an exported graph.
    """
    for axis, size_out in zip((1, 2), size):
        size_in = x.shape[axis]
        if size_in == size_out:
            continue
        i0, i1, w = _axis_weights(size_in, size_out)
        shape = [1] * x.ndim
        shape[axis] = size_out
        w = jnp.asarray(w.reshape(shape), x.dtype)
        index = (slice(None),) * axis
        x = (x.at[index + (i0,)].get(mode="promise_in_bounds", indices_are_sorted=True) * (1 - w)
             + x.at[index + (i1,)].get(mode="promise_in_bounds", indices_are_sorted=True) * w)
    return x


def _classifier(num_classes: int, dtype: Dtype, name: str) -> nn.Conv:
    return nn.Conv(num_classes, (1, 1), dtype=dtype, kernel_init=conv_kernel_init(), name=name)


class LRASPPHead(nn.Module):
    """Lite R-ASPP (V3 Sec. 6.4, Fig. 10) on `high` (1/16) and `low` (1/8) features.

    high -> 1x1 conv `features` (128) + BN + ReLU, times a gate: pooling -> 1x1 conv (no bias,
    no BN) -> sigmoid; bilinear upsampling to `low`'s size; a 1x1 classifier of that plus a
    1x1 classifier of `low`. `gate_pooling` 'global' is torchvision's global average pool;
    'paper' is the paper's 49x49 average pool with stride (16, 20) (the window clipped to the
    map, so a map smaller than 49 pools globally), its gate map upsampled to `high`'s size.
    Returns logits at `low`'s resolution.
    """

    num_classes: int
    features: int = 128
    gate_pooling: GatePooling = "global"
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, low: jax.Array, high: jax.Array, train: bool = False) -> jax.Array:
        x = ConvBN(self.features, activation="relu", norm=self.norm, dtype=self.dtype, name="cbr")(high, train)
        if self.gate_pooling == "global":
            s = jnp.mean(high, axis=(1, 2), keepdims=True)
        else:
            window = tuple(min(w, n) for w, n in zip(PAPER_GATE_WINDOW, high.shape[1:3]))
            s = nn.avg_pool(high, window, strides=PAPER_GATE_STRIDES, padding="VALID")
        s = nn.Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype, kernel_init=conv_kernel_init(),
                    name="gate")(s)
        s = nn.sigmoid(s)
        if s.shape[1:3] != (1, 1):
            s = resize_bilinear(s, high.shape[1:3])
        x = resize_bilinear(x * s, low.shape[1:3])
        return (_classifier(self.num_classes, self.dtype, "low_classifier")(low)
                + _classifier(self.num_classes, self.dtype, "high_classifier")(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): parallel branches of `features` channels,
    each conv + BN + ReLU: a 1x1 conv, one 3x3 conv per rate of `atrous_rates` (dilated;
    regular convolutions, as in torchvision), and image pooling (global average, 1x1 conv,
    broadcast back); concatenated, projected by a 1x1 conv + BN + ReLU, then dropout.
    `atrous_rates=()` is the V2 paper's reduced ASPP (Sec. 6.3: 1x1 and image pooling only).
    """

    features: int = 256
    atrous_rates: tuple[int, ...] = (12, 24, 36)
    dropout_rate: float = 0.5
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        common = dict(activation="relu", norm=self.norm, dtype=self.dtype)
        branches = [ConvBN(self.features, name="conv_1x1", **common)(x, train)]
        for i, rate in enumerate(self.atrous_rates):
            branches.append(ConvBN(self.features, 3, dilation=rate, name=f"atrous_{i}", **common)(x, train))
        pooled = ConvBN(self.features, name="image_pool", **common)(jnp.mean(x, axis=(1, 2), keepdims=True), train)
        branches.append(jnp.broadcast_to(pooled, x.shape[:3] + (self.features,)))
        x = ConvBN(self.features, name="project", **common)(jnp.concatenate(branches, axis=-1), train)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


class DeepLabHead(nn.Module):
    """DeepLabv3's head: `ASPP`, then (`head_conv`, torchvision's DeepLabHead) a 3x3 conv +
    BN + ReLU, then a 1x1 classifier with bias. Returns logits at the input map's resolution."""

    num_classes: int
    features: int = 256
    atrous_rates: tuple[int, ...] = (12, 24, 36)
    dropout_rate: float = 0.5
    head_conv: bool = True
    norm: ModuleDef = batch_norm()
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ASPP(self.features, self.atrous_rates, self.dropout_rate, self.norm, self.dtype, name="aspp")(x, train)
        if self.head_conv:
            x = ConvBN(self.features, 3, activation="relu", norm=self.norm, dtype=self.dtype, name="conv")(x, train)
        return _classifier(self.num_classes, self.dtype, "classifier")(x)
