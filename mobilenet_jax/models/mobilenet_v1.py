"""MobileNetV1 (MobileNets, arXiv 1704.04861), Table 1.

A 3x3 stride-2 stem and 13 depthwise-separable blocks. The width multiplier alpha scales
every layer (`int(c * alpha)`, as in Keras); the resolution multiplier is the input size.
Feature maps (`features_only`): the output of the last block at each output stride, as the
TF object detection API's SSD feature extractor takes them (C4 = Conv2d_11_pointwise,
C5 = Conv2d_13_pointwise; C3 = Conv2d_5_pointwise).
Ablations: `conv_type='full'` replaces every separable block by a full 3x3 conv (Table 4);
`shallow=True` removes the five 14x14x512 blocks (Table 5).
"""
from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax

from mobilenet_jax.blocks import DepthwiseSeparable
from mobilenet_jax.layers import ConvBN
from mobilenet_jax.models.common import Network, check_choice, check_feature_maps, classifier_head, level_name
from mobilenet_jax.models.registry import ModelConfigError, register

#: Table 1: (pointwise output channels, stride) of each depthwise-separable block. The last
#: block's "s2" in the paper is in effect stride 1 (its input is already 7x7), as in Keras.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
STEM_FEATURES = 32
#: Indices of the five 14x14x512 blocks that Table 5's shallow MobileNet removes.
SHALLOW_REMOVED = (6, 7, 8, 9, 10)
#: Keras pads stride-2 convs (0, 1) on each side whatever the input parity; for even
#: feature sizes that equals 'SAME'.
KERAS_STRIDE2_PADDING = ((0, 1), (0, 1))


@register("mobilenet_v1")
class MobileNetV1(Network):
    """MobileNetV1 with the Keras layer semantics (ReLU6, BN epsilon 1e-3, dropout 1e-3).

    Fields beyond `Network`'s: `depth_multiplier` (depthwise channel multiplier),
    `conv_type` ('separable' | 'full'), `shallow`, `activation`, and `keras_padding`
    (pad the stride-2 depthwise blocks ((0, 1), (0, 1)) as Keras does, which differs from
    "SAME" only on odd feature sizes; the stem is "SAME" in Keras too).
    """

    dropout_rate: float = 1e-3
    depth_multiplier: int = 1
    conv_type: Literal["separable", "full"] = "separable"
    shallow: bool = False
    activation: str = "relu6"
    keras_padding: bool = False

    def validate(self) -> None:
        super().validate()
        check_choice("MobileNetV1", "conv_type", self.conv_type, ("separable", "full"))
        check_choice("MobileNetV1", "shallow", self.shallow, (True, False))
        check_choice("MobileNetV1", "activation", self.activation, ("relu", "relu6"))
        if not isinstance(self.depth_multiplier, int) or self.depth_multiplier < 1:
            raise ModelConfigError(
                f"MobileNetV1: depth_multiplier must be an int >= 1, got {self.depth_multiplier!r}"
            )
        self.check_width_gives_channels([int(STEM_FEATURES * self.width)] + [int(c * self.width) for c, _ in BLOCKS])

    def block_table(self) -> list[tuple[int, int]]:
        """(output channels after the width multiplier, stride) of each block kept."""
        return [
            (int(c * self.width), s)
            for i, (c, s) in enumerate(BLOCKS)
            if not (self.shallow and i in SHALLOW_REMOVED)
        ]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_inputs(x)
        stride2 = KERAS_STRIDE2_PADDING if self.keras_padding else "SAME"
        common = dict(activation=self.activation, norm=self.norm, dtype=self.dtype,
                      depthwise_impl=self.depthwise_impl)
        # Keras pads only the stride-2 depthwise blocks explicitly; its stem is "same".
        x = ConvBN(int(STEM_FEATURES * self.width), 3, strides=2, padding="SAME", name="stem", **common)(x, train)
        stride, maps = 2, {}
        for i, (features, strides) in enumerate(self.block_table()):
            padding = stride2 if strides == 2 else "SAME"
            if self.conv_type == "full":
                block = ConvBN(features, 3, strides=strides, padding=padding, name=f"blocks_{i}", **common)
            else:
                block = DepthwiseSeparable(
                    features,
                    strides=strides,
                    depth_multiplier=self.depth_multiplier,
                    padding=padding,
                    name=f"blocks_{i}",
                    **common,
                )
            x = block(x, train)
            stride *= strides
            if level_name(stride):
                maps[level_name(stride)] = x  # the last block at this stride wins
        if self.features_only:
            return check_feature_maps(self, maps)
        return classifier_head(self, x, train)
