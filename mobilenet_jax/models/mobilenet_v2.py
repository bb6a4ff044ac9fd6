"""MobileNetV2 (Inverted Residuals and Linear Bottlenecks, arXiv 1801.04381), Table 2.

Stem 3x3/2 conv to 32, seventeen inverted-residual blocks in seven stages (t, c, n, s), a
1x1 conv to 1280, global pool and a linear classifier. Channels follow Keras:
`make_divisible(int(c * width), 8)`; the last conv stays 1280 for width <= 1 (Sec. 4:
"we apply width multiplier to all layers except the very last convolutional layer") and is
`make_divisible(1280 * width)` above 1.
Feature maps (`features_only`, SSDLite Sec. 6.2): C4 is the expansion of layer 15 (the first
block of the 160-channel stage, whose expansion is still at output stride 16), C5 the last
1x1 conv (1280, stride 32); C3 is the output of the last stride-8 block.
`output_stride` 16 or 8 (Sec. 6.3, Mobile DeepLabv3): the last stride-2 block(s) get stride 1
and atrous depthwise convolutions (`common.atrous_schedule`); the maps keep their layers and
names, at the strides `common.feature_strides` gives. `last_conv=False` drops the 1280
conv: Sec. 6.3's "MNet V2*", whose DeepLab head reads the last block's 320 channels (C5 is
then that output).
Ablations: `bottleneck_activation` (Fig. 6a), `shortcut` (Fig. 6b).
"""
from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax

from mobilenet_jax.blocks import SHORTCUT_KINDS, InvertedResidual, ShortcutKind
from mobilenet_jax.layers import ConvBN, make_divisible
from mobilenet_jax.models.common import (
    Network, atrous_schedule, check_choice, check_feature_maps, check_output_stride, classifier_head,
)
from mobilenet_jax.models.registry import ModelConfigError
from mobilenet_jax.models.registry import register

#: Table 2 bottleneck stages: (expansion t, output channels c, repeats n, first stride s).
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_FEATURES = 32
LAST_FEATURES = 1280


@register("mobilenet_v2")
class MobileNetV2(Network):
    """MobileNetV2. Fields beyond `Network`'s:

    - `bottleneck_activation`: 'linear' (paper) or 'relu6' (Fig. 6a ablation).
    - `shortcut`: 'bottleneck' (paper), 'expansion' or 'none' (Fig. 6b ablation).
    - `activation`: the nonlinearity of the expansion and depthwise layers (ReLU6).
    """

    dropout_rate: float = 0.2
    bn_momentum: float = 0.999
    bottleneck_activation: Literal["linear", "relu6"] = "linear"
    shortcut: ShortcutKind = "bottleneck"
    activation: str = "relu6"
    #: Scale the last 1x1 conv by `width` below 1 too (TF-slim's mobilenet_base without
    #: `finegrain_classification_mode`, as the TF object detection API builds V2 for SSDLite).
    scale_last_conv: bool = False
    #: 32 (paper, classification), 16 or 8: atrous last stage(s) for dense prediction.
    output_stride: int = 32
    #: The 1x1 conv to 1280 after the last block; False is Sec. 6.3's "MNet V2*" backbone.
    last_conv: bool = True

    def validate(self) -> None:
        super().validate()
        check_output_stride("MobileNetV2", self.output_stride)
        check_choice("MobileNetV2", "last_conv", self.last_conv, (True, False))
        if not self.last_conv and not self.features_only:
            raise ModelConfigError("MobileNetV2: last_conv=False is a backbone's (Sec. 6.3, MNet V2*); "
                                   "set features_only=True or keep last_conv")
        check_choice("MobileNetV2", "scale_last_conv", self.scale_last_conv, (True, False))
        check_choice("MobileNetV2", "bottleneck_activation", self.bottleneck_activation, ("linear", "relu6"))
        check_choice("MobileNetV2", "shortcut", self.shortcut, SHORTCUT_KINDS)
        check_choice("MobileNetV2", "activation", self.activation, ("relu", "relu6"))

    def block_table(self) -> list[tuple[int, int, int]]:
        """(expanded channels, output channels, stride) of each of the 17 blocks."""
        blocks = []
        in_features = make_divisible(STEM_FEATURES * self.width)
        for t, c, n, s in STAGES:
            out_features = make_divisible(int(c * self.width))
            for i in range(n):
                blocks.append((t * in_features, out_features, s if i == 0 else 1))
                in_features = out_features
        return blocks

    @property
    def last_features(self) -> int:
        scaled = self.width > 1.0 or self.scale_last_conv
        return make_divisible(LAST_FEATURES * self.width) if scaled else LAST_FEATURES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_inputs(x)
        common = dict(activation=self.activation, norm=self.norm, dtype=self.dtype,
                      depthwise_impl=self.depthwise_impl)
        x = ConvBN(make_divisible(STEM_FEATURES * self.width), 3, strides=2, name="stem", **common)(x, train)
        expanded, stride, maps = None, 2, {}
        table = self.block_table()
        atrous = atrous_schedule([s for _, _, s in table], self.output_stride)
        for i, ((expanded_features, out_features, strides), (step, dilation)) in enumerate(zip(table, atrous)):
            block = InvertedResidual(
                expanded_features,
                out_features,
                strides=step,
                dilation=dilation,
                bottleneck_activation=self.bottleneck_activation,
                shortcut=self.shortcut,
                name=f"blocks_{i}",
                **common,
            )
            if self.shortcut == "expansion" or (strides == 2 and stride == 16):
                residual = expanded if self.shortcut == "expansion" else None
                x, expanded = block(x, train, expanded_residual=residual, return_expanded=True)
                if strides == 2 and stride == 16:
                    maps["C4"] = expanded
            else:
                x = block(x, train)
            stride *= strides  # the nominal stride: it names the maps
            if stride == 8:
                maps["C3"] = x
        if self.last_conv:
            x = ConvBN(self.last_features, name="last_conv", **common)(x, train)
        if self.features_only:
            return check_feature_maps(self, {**maps, "C5": x})
        return classifier_head(self, x, train)
