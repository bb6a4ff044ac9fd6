"""MobileNetV3-Large and -Small (Searching for MobileNetV3, arXiv 1905.02244), Tables 1, 2.

Stem 3x3/2 conv to 16 (not width-scaled) with h-swish; a table of inverted residuals with
kernel 3 or 5, optional squeeze-excite and ReLU or h-swish; a 1x1 conv to 6x the last block
width; global pool; then the efficient last stage of Sec. 5.1: a 1x1 conv without BN
(`pre_logits`, 1280 or 1024, scaled only for width > 1) with the activation, dropout and
the classifier.

Expanded widths are `make_divisible(in * ratio)` with Keras's ratios (72/16, 88/24, 2.5,
2.3, ...), so widths other than 1 match Keras exactly. Minimalistic variants (Keras/TF-slim)
use 3x3 kernels, ReLU and no squeeze-excite everywhere.

Feature maps (`features_only`, Sec. 6.3): C4 is the expansion layer of the block that
downsamples from stride 16 to 32 (the 13th bottleneck of Large, the 9th of Small), C5 the
1x1 conv before pooling (stride 32), C3 the output of the last stride-8 block.
`reduced_tail=True` is Sec. 6.3's detection variant: the channels of every layer between C4
and C5 halved (the C4 block's projection, the later blocks and the last conv; C4 itself and
the layers before it unchanged, so the shared part still loads classification weights).
`output_stride` 16 (Sec. 6.4: "atrous convolution in the last block"; torchvision's
`dilated=True`) or 8: the last stride-2 block(s) get stride 1 and atrous depthwise
convolutions (`common.atrous_schedule`); the maps keep their layers and names, at the
strides `common.feature_strides` gives (at 16: C3 1/8, C4 and C5 1/16).

Ablations (Table 5): `hswish_from` — None for ReLU everywhere; N for h-swish from the first
block with N (unscaled) output channels on, with the stem and head in h-swish; the
published Large network is `hswish_from=80`, the whole network `hswish_from=16`.
`squeeze_excite=False` removes every SE module.

Sec. 5.1's redesigned expensive layers, each a switch whose default is the paper's choice:
`last_stage='original'` is the V2-style last stage of Fig. 5 (after the last block's 1x1
expansion: a 3x3 depthwise conv, a linear 1x1 projection to twice the last block's width and
a 1x1 conv to 1280 at 7x7, then pooling) instead of the efficient one (pooling right after
the expansion, the 1280 conv after pooling: "7 ms, 11% of the running time, and 30M MAdds");
`stem='relu32'` is the 32-filter ReLU stem instead of 16 filters with h-swish ("saves 2 ms
and 10M MAdds").
"""
from __future__ import annotations

from typing import ClassVar, NamedTuple, Optional

import flax.linen as nn
import jax

from mobilenet_jax.blocks import InvertedResidual
from mobilenet_jax.layers import ConvBN, get_activation, make_divisible
from mobilenet_jax.models.common import (
    Network, atrous_schedule, check_choice, check_feature_maps, check_output_stride, classifier_head,
)
from mobilenet_jax.models.registry import ModelConfigError, register

SE_RATIO = 0.25
STEM_FEATURES = 16
#: Sec. 5.1 / Fig. 5: the efficient last stage (published) and the original, V2-style one.
LAST_STAGES = ("efficient", "original")
#: Sec. 5.1: the published 16-filter h-swish stem, and the 32-filter ReLU stem it replaced
#: (name -> (filters, activation; None = the network's outer activation)).
STEMS = {"hswish16": (16, None), "relu32": (32, "relu")}


class V3Block(NamedTuple):
    """One row of Table 1 / Table 2 (channels before the width multiplier)."""

    expand_ratio: float
    out_features: int
    kernel_size: int
    strides: int
    squeeze_excite: bool


#: Table 1 (Large). The published nonlinearity is ReLU up to the 80-channel stage, then h-swish.
LARGE = (
    V3Block(1, 16, 3, 1, False),
    V3Block(4, 24, 3, 2, False),
    V3Block(3, 24, 3, 1, False),
    V3Block(3, 40, 5, 2, True),
    V3Block(3, 40, 5, 1, True),
    V3Block(3, 40, 5, 1, True),
    V3Block(6, 80, 3, 2, False),
    V3Block(2.5, 80, 3, 1, False),
    V3Block(2.3, 80, 3, 1, False),
    V3Block(2.3, 80, 3, 1, False),
    V3Block(6, 112, 3, 1, True),
    V3Block(6, 112, 3, 1, True),
    V3Block(6, 160, 5, 2, True),
    V3Block(6, 160, 5, 1, True),
    V3Block(6, 160, 5, 1, True),
)

#: Table 2 (Small), latest arXiv version. h-swish from the 40-channel stage on.
SMALL = (
    V3Block(1, 16, 3, 2, True),
    V3Block(72 / 16, 24, 3, 2, False),
    V3Block(88 / 24, 24, 3, 1, False),
    V3Block(4, 40, 5, 2, True),
    V3Block(6, 40, 5, 1, True),
    V3Block(6, 40, 5, 1, True),
    V3Block(3, 48, 5, 1, True),
    V3Block(3, 48, 5, 1, True),
    V3Block(6, 96, 5, 2, True),
    V3Block(6, 96, 5, 1, True),
    V3Block(6, 96, 5, 1, True),
)


class MobileNetV3(Network):
    """MobileNetV3 network; `MobileNetV3Large` and `MobileNetV3Small` fix its table.

    Fields beyond `Network`'s: `minimalistic`, `hswish_from`, `squeeze_excite`,
    `rescale_inputs` (take [0, 255] inputs and rescale them inside the network, as Keras's
    `include_preprocessing=True` does; off by default: inputs are in [-1, 1] as for every
    network here).
    """

    dropout_rate: float = 0.2
    minimalistic: bool = False
    hswish_from: Optional[int] = 80
    squeeze_excite: bool = True
    rescale_inputs: bool = False
    reduced_tail: bool = False
    last_stage: str = "efficient"
    stem: str = "hswish16"
    #: 32 (paper, classification), 16 (Sec. 6.4's segmentation backbone) or 8.
    output_stride: int = 32

    table: ClassVar[tuple[V3Block, ...]] = LARGE
    pre_logits_features: ClassVar[int] = 1280

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        check_choice(name, "minimalistic", self.minimalistic, (True, False))
        check_choice(name, "squeeze_excite", self.squeeze_excite, (True, False))
        check_choice(name, "rescale_inputs", self.rescale_inputs, (True, False))
        check_choice(name, "reduced_tail", self.reduced_tail, (True, False))
        check_choice(name, "last_stage", self.last_stage, LAST_STAGES)
        check_choice(name, "stem", self.stem, tuple(STEMS))
        check_output_stride(name, self.output_stride)
        if self.last_stage != "efficient" and self.features_only:
            raise ModelConfigError(f"{name}: last_stage='original' is a classifier's; a backbone ends at C5")
        stages = sorted({b.out_features for b in self.table})
        if self.hswish_from is not None and self.hswish_from not in stages:
            raise ModelConfigError(
                f"{name}: hswish_from must be None (ReLU everywhere) or a stage width in "
                f"{stages}, got {self.hswish_from!r}"
            )

    def block_activation(self, index: int) -> str:
        if self.minimalistic or self.hswish_from is None:
            return "relu"
        first = next(i for i, b in enumerate(self.table) if b.out_features == self.hswish_from)
        return "hard_swish" if index >= first else "relu"

    @property
    def outer_activation(self) -> str:
        """The stem's, last conv's and pre-logits' nonlinearity."""
        return "relu" if self.minimalistic or self.hswish_from is None else "hard_swish"

    @property
    def c4_block(self) -> int:
        """Index of the block whose expansion is C4: the one that downsamples 16 -> 32."""
        stride = 2
        for i, b in enumerate(self.table):
            if b.strides == 2 and stride == 16:
                return i
            stride *= b.strides
        raise ModelConfigError(f"{type(self).__name__}: the table never reaches output stride 32")

    def block_table(self) -> list[dict]:
        """Keyword arguments of each `InvertedResidual`, after width and variant rules
        (`strides` and `dilation` after `output_stride`; the table keeps the nominal ones)."""
        blocks, in_features = [], STEMS[self.stem][0]
        tail_divisor = 2 if self.reduced_tail else 1
        atrous = atrous_schedule([b.strides for b in self.table], self.output_stride)
        for i, (b, (strides, dilation)) in enumerate(zip(self.table, atrous)):
            expanded = make_divisible(in_features * b.expand_ratio)
            out_features = b.out_features // (tail_divisor if i >= self.c4_block else 1)
            out_features = make_divisible(out_features * self.width)
            use_se = b.squeeze_excite and self.squeeze_excite and not self.minimalistic
            blocks.append(
                dict(
                    expanded_features=expanded,
                    out_features=out_features,
                    kernel_size=3 if self.minimalistic else b.kernel_size,
                    strides=strides,
                    dilation=dilation,
                    activation=self.block_activation(i),
                    se_features=make_divisible(expanded * SE_RATIO) if use_se else None,
                )
            )
            in_features = out_features
        return blocks

    @property
    def last_features(self) -> int:
        return make_divisible(self.block_table()[-1]["out_features"] * 6)

    @property
    def pre_logits(self) -> int:
        base = self.pre_logits_features
        return make_divisible(base * self.width) if self.width > 1.0 else base

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_inputs(x)
        if self.rescale_inputs:
            x = x * (1.0 / 127.5) - 1.0
        act = self.outer_activation
        common = dict(norm=self.norm, dtype=self.dtype,
                      depthwise_impl=self.depthwise_impl)
        stem_features, stem_activation = STEMS[self.stem]
        x = ConvBN(stem_features, 3, strides=2, activation=stem_activation or act, name="stem", **common)(x, train)
        stride, maps = 2, {}
        for i, kwargs in enumerate(self.block_table()):
            block = InvertedResidual(name=f"blocks_{i}", **kwargs, **common)
            if i == self.c4_block:
                x, maps["C4"] = block(x, train, return_expanded=True)
            else:
                x = block(x, train)
            stride *= self.table[i].strides  # the nominal stride: it names the maps
            if stride == 8:
                maps["C3"] = x
        x = ConvBN(self.last_features, activation=act, name="last_conv", **common)(x, train)
        if self.features_only:
            return check_feature_maps(self, {**maps, "C5": x})
        if self.last_stage == "original":  # Fig. 5, top: the V2-style stage at 7x7
            channels = x.shape[-1]
            x = ConvBN(channels, 3, groups=channels, activation=act, name="last_depthwise", **common)(x, train)
            x = ConvBN(2 * self.block_table()[-1]["out_features"], activation="linear", name="last_project",
                       **common)(x, train)
            x = ConvBN(self.pre_logits, activation=act, name="pre_logits_conv", **common)(x, train)
            return classifier_head(self, x, train)
        x = x.mean(axis=(1, 2))
        x = nn.Dense(self.pre_logits, dtype=self.dtype, name="pre_logits")(x)
        x = get_activation(act)(x)
        return classifier_head(self, x, train, pool=False)


@register("mobilenet_v3_large")
class MobileNetV3Large(MobileNetV3):
    """MobileNetV3-Large (Table 1): h-swish from the 80-channel stage."""

    hswish_from: Optional[int] = 80
    table: ClassVar[tuple[V3Block, ...]] = LARGE
    pre_logits_features: ClassVar[int] = 1280


@register("mobilenet_v3_small")
class MobileNetV3Small(MobileNetV3):
    """MobileNetV3-Small (Table 2, latest arXiv version): h-swish from the 40-channel stage."""

    hswish_from: Optional[int] = 40
    table: ClassVar[tuple[V3Block, ...]] = SMALL
    pre_logits_features: ClassVar[int] = 1024
