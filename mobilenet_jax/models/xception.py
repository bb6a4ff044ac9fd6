"""Xception (Deep Learning with Depthwise Separable Convolutions, arXiv 1610.02357), Fig. 5.

Entry flow: two 3x3 convs (32/2, 64; 'valid' as in Keras) and three residual modules
(128, 256, 728, each ending in a 3x3/2 max pool with a strided 1x1 conv shortcut); middle
flow: eight modules of three 728-wide separable convs with identity shortcuts; exit flow:
a (728, 1024) module with pool and conv shortcut, separable convs to 1536 and 2048 with
ReLU, global pool, dropout 0.5 and the logistic-regression layer. 36 conv layers in 14
modules; the default input is 299x299.

Feature maps (`features_only`): the output of the last layer at each output stride, as for
the MobileNets: C3 = entry module 2 (256 channels, stride 8), C4 = the middle flow's end (728,
stride 16), C5 = the exit flow's last separable conv (2048, stride 32). The entry flow's
'valid' stem rounds the map sizes (299 -> 37, 19, 10; 320 -> 40, 20, 10).

Ablations: `residual=False` drops every shortcut (Fig. 9); `separable_activation` puts
'relu' or 'elu' between depthwise and pointwise steps (Fig. 10; the paper uses none).
"""
from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import flax.linen as nn
import jax

from mobilenet_jax.blocks import SeparableConvBN, XceptionModule
from mobilenet_jax.layers import ConvBN
from mobilenet_jax.models.common import Network, check_choice, check_feature_maps, classifier_head, level_name
from mobilenet_jax.models.registry import register


class ModuleSpec(NamedTuple):
    """One residual module of Fig. 5 (channels before the width multiplier)."""

    features: tuple[int, ...]
    pool: bool
    shortcut: Literal["conv", "identity"]
    activate_input: bool


#: Entry-flow stem: (channels, stride) of the two 3x3 'valid' convs.
STEM: tuple[tuple[int, int], ...] = ((32, 2), (64, 1))
MODULES: tuple[ModuleSpec, ...] = (
    ModuleSpec((128, 128), True, "conv", False),
    ModuleSpec((256, 256), True, "conv", True),
    ModuleSpec((728, 728), True, "conv", True),
    *(ModuleSpec((728, 728, 728), False, "identity", True) for _ in range(8)),
    ModuleSpec((728, 1024), True, "conv", True),
)
EXIT_FEATURES: tuple[int, ...] = (1536, 2048)


@register("xception")
class Xception(Network):
    """Xception. Fields beyond `Network`'s: `residual`, `separable_activation`; `width`
    scales every layer's channels (`int(c * width)`; 1.0 is the paper's network)."""

    dropout_rate: float = 0.5
    residual: bool = True
    separable_activation: Literal["none", "relu", "elu"] = "none"

    # 32 leaves the exit flow a 1x1 map (two valid 3x3 stem convolutions, then four stride-2
    # stages), like the MobileNets at 32. keras.applications asks for 71, a convention of its
    # wrapper; the CPU-scale Xception ablations train at 32x32.
    min_resolution: ClassVar[int] = 32
    default_resolution: ClassVar[int] = 299

    def validate(self) -> None:
        super().validate()
        check_choice("Xception", "residual", self.residual, (True, False))
        check_choice("Xception", "separable_activation", self.separable_activation, ("none", "relu", "elu"))
        self.check_width_gives_channels(self._scale(c) for c, _ in STEM)

    def _scale(self, channels: int) -> int:
        return int(channels * self.width)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_inputs(x)
        common = dict(norm=self.norm, dtype=self.dtype,
                      depthwise_impl=self.depthwise_impl)
        stride, maps = 1, {}
        for i, (features, strides) in enumerate(STEM):
            x = ConvBN(
                self._scale(features), 3, strides=strides, padding="VALID", activation="relu",
                name=f"stem_{i}", **common,
            )(x, train)
            stride *= strides
        for i, spec in enumerate(MODULES):
            x = XceptionModule(
                tuple(self._scale(c) for c in spec.features),
                pool=spec.pool,
                shortcut=spec.shortcut if self.residual else "none",
                activate_input=spec.activate_input,
                intermediate_activation=self.separable_activation,
                name=f"blocks_{i}",
                **common,
            )(x, train)
            stride *= 2 if spec.pool else 1
            if level_name(stride):
                maps[level_name(stride)] = x  # the last module at this stride wins
        for i, features in enumerate(EXIT_FEATURES):
            x = SeparableConvBN(
                self._scale(features), activation="relu",
                intermediate_activation=self.separable_activation, name=f"exit_{i}", **common,
            )(x, train)
        maps[level_name(stride)] = x
        if self.features_only:
            return check_feature_maps(self, maps)
        return classifier_head(self, x, train)
