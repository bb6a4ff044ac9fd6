"""What every network shares: classifier fields, BatchNorm settings, validation of fields and
inputs. Each network is a subclass that adds its block table and its ablation switches."""
from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.layers import DEPTHWISE_IMPLS, DepthwiseImpl, Dtype, ModuleDef, batch_norm
from mobilenet_jax.models.registry import ModelConfigError

COMPUTE_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


class Network(nn.Module):
    """Fields common to every network. Inputs are NHWC images scaled to [-1, 1]."""

    num_classes: int = 1000
    width: float = 1.0
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    bn_axis_name: Optional[str] = None
    #: How depthwise convolutions are computed (`layers.depthwise_conv2d`): 'auto' picks the
    #: fastest form per backend; 'shifted' / 'grouped' force one. The function is the same.
    depthwise_impl: DepthwiseImpl = "auto"
    #: Return the named feature maps {"C3", "C4", "C5"} (output strides 8, 16, 32; see
    #: `FEATURE_STRIDES`; on a V2 / V3 built at `output_stride` 16 or 8, `feature_strides`)
    #: instead of logits, and build no classifier: a detector's or segmenter's backbone.
    #: The shared layers keep their classification names, so classification weights load.
    features_only: bool = False

    #: The task the network trains for: a name registered in `mobilenet_jax.tasks` (its loss,
    #: evaluation and batch layout). The data set must be one of the same task.
    task: ClassVar[str] = "classification"
    #: Smallest input side the network accepts (Keras's limits).
    min_resolution: ClassVar[int] = 32
    #: The paper's input side, used by the size accounting.
    default_resolution: ClassVar[int] = 224

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Rejects impossible settings; subclasses extend it with their own switches."""
        model = type(self).__name__
        if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1:
            raise ModelConfigError(f"{model}: num_classes must be a positive int, got {self.num_classes!r}")
        if not _is_real(self.width) or not (self.width > 0 and math.isfinite(self.width)):
            raise ModelConfigError(f"{model}: width must be a finite number > 0, got {self.width!r}")
        if not _is_real(self.dropout_rate) or not 0.0 <= self.dropout_rate < 1.0:
            raise ModelConfigError(f"{model}: dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if not _is_real(self.bn_momentum) or not 0.0 <= self.bn_momentum < 1.0:
            raise ModelConfigError(f"{model}: bn_momentum must be in [0, 1), got {self.bn_momentum!r}")
        if not _is_real(self.bn_epsilon) or not self.bn_epsilon > 0:
            raise ModelConfigError(f"{model}: bn_epsilon must be > 0, got {self.bn_epsilon!r}")
        check_choice(model, "depthwise_impl", self.depthwise_impl, DEPTHWISE_IMPLS)
        check_choice(model, "features_only", self.features_only, (True, False))
        if jnp.dtype(self.dtype) not in [jnp.dtype(d) for d in COMPUTE_DTYPES]:
            raise ModelConfigError(
                f"{model}: dtype must be one of float32, bfloat16, float16; got {self.dtype!r}"
            )

    @property
    def norm(self) -> ModuleDef:
        return batch_norm(self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)

    def check_inputs(self, x: jax.Array) -> jax.Array:
        """Validates an image batch (rank, channels, size, dtype) and casts it to `dtype`."""
        model = type(self).__name__
        if x.ndim != 4:
            raise ValueError(
                f"{model} expects NHWC images of rank 4 [batch, height, width, 3], got shape {x.shape}"
            )
        if x.shape[-1] != 3:
            raise ValueError(
                f"{model} expects 3 input channels (NHWC, RGB), got shape {x.shape}; "
                "is the batch laid out NCHW?"
            )
        if min(x.shape[1:3]) < self.min_resolution:
            raise ValueError(
                f"{model} needs inputs of at least {self.min_resolution}x{self.min_resolution}, "
                f"got {x.shape[1]}x{x.shape[2]}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"{model} expects floating-point images scaled to [-1, 1], got dtype {x.dtype}; "
                "convert uint8 images with x / 127.5 - 1"
            )
        return x.astype(self.dtype)

    def check_width_gives_channels(self, channels: Iterable[int]) -> None:
        """Raises if the width multiplier rounds some layer down to no channels at all."""
        if min(channels) < 1:
            raise ModelConfigError(
                f"{type(self).__name__}: width {self.width} leaves a layer with no channels; "
                "use a larger width"
            )


#: Output stride of each named feature map of `Network.features_only` (the papers' C4 / C5:
#: V3 Sec. 6.3; C3 is the stride-8 map for later heads), for a backbone at output stride 32.
FEATURE_STRIDES: dict[str, int] = {"C3": 8, "C4": 16, "C5": 32}
#: Output strides a V2 / V3 backbone can be built at (`output_stride`, atrous convolution).
OUTPUT_STRIDES = (8, 16, 32)


def feature_strides(output_stride: int = 32) -> dict[str, int]:
    """Output stride of each named map of a backbone built at `output_stride`.

    A name always means the same layer (C4: the expansion of the block that would downsample
    16 -> 32, C5: the last conv, C3: the last block at stride 8), so its weights and channels
    do not depend on `output_stride`; only its resolution does: min(nominal, output_stride).
    At 16, C4 and C5 are both at 1/16; at 8, all three are at 1/8.
    """
    return {name: min(stride, output_stride) for name, stride in FEATURE_STRIDES.items()}


def atrous_schedule(strides: Iterable[int], output_stride: int, start: int = 2) -> list[tuple[int, int]]:
    """(stride, dilation) of each block of a backbone whose blocks have nominal `strides`,
    entered at output stride `start` (after the stem), built at `output_stride`.

    DeepLab's atrous convolution (V2 Sec. 6.3, V3 Sec. 6.4): a stride-2 block that would take
    the output stride beyond `output_stride` gets stride 1 instead, and from that block on
    every depthwise convolution is dilated by the strides removed so far. The block that
    loses its stride is dilated as well, as torchvision's `dilated=True` MobileNetV3 does (its
    LR-ASPP and DeepLabV3 backbones); TF-slim dilates only the blocks after it. At 32 every
    block keeps its stride and dilation 1: the network is unchanged.
    """
    out, stride, rate = [], start, 1
    for s in strides:
        if stride * s > output_stride:
            rate *= s
            out.append((1, rate))
        else:
            stride *= s
            out.append((s, rate))
    return out


def check_output_stride(model: str, output_stride: Any) -> None:
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise ModelConfigError(
            f"{model}: output_stride must be one of {OUTPUT_STRIDES} (32: the classification "
            f"network; 16 or 8: the last stage(s) atrous, for segmentation), got {output_stride!r}"
        )


def level_name(stride: int) -> Optional[str]:
    """The feature-map name of an output stride, None for strides that have none."""
    return {s: n for n, s in FEATURE_STRIDES.items()}.get(stride)


def check_feature_maps(net: Network, maps: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The maps in `FEATURE_STRIDES` order; raises if the network never reached one of them."""
    missing = [name for name in FEATURE_STRIDES if name not in maps]
    if missing:
        raise ValueError(f"{type(net).__name__}: no feature map {missing} was produced; "
                         "is a stride-2 layer missing from the block table?")
    return {name: maps[name] for name in FEATURE_STRIDES}


def classifier_head(net: Network, x: jax.Array, train: bool, pool: bool = True) -> jax.Array:
    """Global average pool -> dropout -> linear classifier `classifier`; logits in float32.

    Called inside a network's compact `__call__`, so `classifier` is that network's child.
    """
    if pool:
        x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(net.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(net.num_classes, dtype=net.dtype, name="classifier")(x)
    return x.astype(jnp.float32)


def check_choice(model: str, field: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ModelConfigError(f"{model}: {field} must be one of {choices}, got {value!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
