"""Segmentation networks: a MobileNet backbone at output stride 16 (or 8) and a head; logits
[B, H, W, num_classes] in float32, upsampled bilinearly to the input size.

- `LRASPP` (`lraspp`): MobileNetV3 Sec. 6.4, Fig. 10. The backbone is V3-Large or V3-Small
  with atrous convolution in the last stage (output stride 16) and, by default, the halved
  tail of Sec. 6.3 (`reduced_tail`); the head reads C5 (1/16) and C3 (1/8).
- `DeepLabV3` (`deeplabv3`): DeepLabv3 on C5. `aspp='full'` is torchvision's DeepLabHead
  (ASPP with rates 12, 24, 36 and a 3x3 conv before the classifier); `aspp='reduced'` is
  MobileNetV2 Sec. 6.3's Mobile DeepLabv3 ("R-ASPP": only the 1x1 and image-pooling
  branches). V2 Sec. 6.3's configuration is `backbone='mobilenet_v2', aspp='reduced',
  head_conv=False, last_conv=False` (its "MNet V2*", the head on the last block's 320
  channels) at output stride 16 or 8.

torchvision's builders, to count against (measured sizes: docs/papers.md, "torchvision
reference sizes"; tests/test_segmentation_models.py):
- `lraspp_mobilenet_v3_large()` = `lraspp` with `reduced_tail=False`: equal parameter and
  BatchNorm statistics counts. torchvision takes its 1/8 map from the first stride-8 block
  (features[4]), we from the last one (C3); both have 40 channels, so the counts agree but
  the layer read differs.
- `deeplabv3_mobilenet_v3_large(aux_loss=False)` = `deeplabv3` (the defaults): equal counts,
  the same layers in the same places.
Neither is torchvision's function to the bit: as for the classifiers here, stride-2 layers pad
TensorFlow's 'SAME' way (torchvision pads symmetrically), and the heads' BatchNorm uses
`Network`'s epsilon 1e-3 and decay 0.99 (PyTorch's 1e-5, 0.9). No count depends on either. V3 Table 7 (Cityscapes mIOU,
params, MAdds) is not transcribed in docs/papers.md, so no paper count is compared here.

Parameters of the backbone live under `backbone/` with the classification network's names
(as in SSDLite), so `detection.ssdlite.load_backbone` copies ImageNet weights in.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.models.common import Network, check_choice, check_output_stride
from mobilenet_jax.models.registry import ModelConfigError, create_model, register
from mobilenet_jax.segmentation.heads import GATE_POOLINGS, DeepLabHead, GatePooling, LRASPPHead, resize_bilinear

V3_BACKBONES = ("mobilenet_v3_large", "mobilenet_v3_small")
BACKBONES = ("mobilenet_v2",) + V3_BACKBONES
ASPP_KINDS = ("full", "reduced")


class SegmentationNetwork(Network):
    """What both segmentation networks share: a backbone with `features_only=True` at
    `output_stride`, built with this network's width, dtype, BatchNorm and depthwise
    settings. `num_classes` counts every class, background included (21: PASCAL VOC,
    torchvision's default). `features_only` does not apply (the output is per-pixel logits).
    """

    task: ClassVar[str] = "segmentation"
    backbones: ClassVar[tuple[str, ...]] = BACKBONES
    default_resolution: ClassVar[int] = 512

    num_classes: int = 21
    backbone: str = "mobilenet_v3_large"
    output_stride: int = 16
    reduced_tail: bool = False

    def validate(self) -> None:
        super().validate()
        model = type(self).__name__
        if self.features_only:
            raise ModelConfigError(f"{model}: features_only is a backbone's field; a segmentation "
                                   "network returns per-pixel logits (use the backbone's features_only)")
        check_choice(model, "backbone", self.backbone, self.backbones)
        check_output_stride(model, self.output_stride)
        check_choice(model, "reduced_tail", self.reduced_tail, (True, False))
        if self.reduced_tail and self.backbone not in V3_BACKBONES:
            raise ModelConfigError(f"{model}: reduced_tail is MobileNetV3's (Sec. 6.3); backbone "
                                   f"{self.backbone!r} has none: set reduced_tail=False")

    def backbone_overrides(self) -> dict[str, Any]:
        return dict(reduced_tail=True) if self.reduced_tail else {}

    def backbone_network(self) -> Network:
        return create_model(
            self.backbone, features_only=True, output_stride=self.output_stride, width=self.width,
            dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
            bn_axis_name=self.bn_axis_name, depthwise_impl=self.depthwise_impl, **self.backbone_overrides(),
        )

    def features(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        return self.backbone_network().clone(parent=self, name="backbone")(x, train)

    def upsample_logits(self, logits: jax.Array, x: jax.Array) -> jax.Array:
        return resize_bilinear(logits, x.shape[1:3]).astype(jnp.float32)


@register("lraspp")
class LRASPP(SegmentationNetwork):
    """LR-ASPP (V3 Sec. 6.4). Fields beyond `SegmentationNetwork`'s: `head_features` (128),
    `gate_pooling` ('global' as torchvision, 'paper' for the 49x49 / (16, 20) pooling), and
    `reduced_tail` (default True: the paper's halved C4-C5 tail; False is torchvision's)."""

    backbones: ClassVar[tuple[str, ...]] = V3_BACKBONES

    reduced_tail: bool = True
    head_features: int = 128
    gate_pooling: GatePooling = "global"

    def validate(self) -> None:
        super().validate()
        check_choice("LRASPP", "gate_pooling", self.gate_pooling, GATE_POOLINGS)
        if not isinstance(self.head_features, int) or self.head_features < 1:
            raise ModelConfigError(f"LRASPP: head_features must be a positive int, got {self.head_features!r}")

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_inputs(x)
        maps = self.features(x, train)
        logits = LRASPPHead(self.num_classes, self.head_features, self.gate_pooling, self.norm, self.dtype,
                            name="head")(maps["C3"], maps["C5"], train)
        return self.upsample_logits(logits, x)


@register("deeplabv3")
class DeepLabV3(SegmentationNetwork):
    """DeepLabv3 on a MobileNet (V2 Sec. 6.3; torchvision's deeplabv3_mobilenet_v3_large).
    Fields beyond `SegmentationNetwork`'s: `aspp` ('full' | 'reduced'), `atrous_rates`
    (torchvision's 12, 24, 36 at output stride 16; DeepLabv3 uses 6, 12, 18 there and twice
    those at 8), `head_features` (256), `head_conv` (torchvision's 3x3 conv after ASPP; the V2
    paper has none), `last_conv` (V2 backbone only: False = "MNet V2*"), and `dropout_rate`
    (0.5, after the ASPP projection)."""

    dropout_rate: float = 0.5
    aspp: Literal["full", "reduced"] = "full"
    atrous_rates: tuple[int, ...] = (12, 24, 36)
    head_features: int = 256
    head_conv: bool = True
    last_conv: bool = True

    def validate(self) -> None:
        super().validate()
        check_choice("DeepLabV3", "aspp", self.aspp, ASPP_KINDS)
        check_choice("DeepLabV3", "head_conv", self.head_conv, (True, False))
        check_choice("DeepLabV3", "last_conv", self.last_conv, (True, False))
        rates = self.atrous_rates
        if not isinstance(rates, (tuple, list)) or not rates or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates):
            raise ModelConfigError(f"DeepLabV3: atrous_rates must be a non-empty tuple of ints >= 1, got {rates!r}"
                                   " (aspp='reduced' drops the atrous branches)")
        if not isinstance(self.head_features, int) or self.head_features < 1:
            raise ModelConfigError(f"DeepLabV3: head_features must be a positive int, got {self.head_features!r}")
        if not self.last_conv and self.backbone != "mobilenet_v2":
            raise ModelConfigError("DeepLabV3: last_conv=False is V2 Sec. 6.3's MNet V2*; backbone "
                                   f"{self.backbone!r} keeps its last conv")

    def backbone_overrides(self) -> dict[str, Any]:
        return {**super().backbone_overrides(), **({} if self.last_conv else dict(last_conv=False))}

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_inputs(x)
        maps = self.features(x, train)
        rates = tuple(self.atrous_rates) if self.aspp == "full" else ()
        logits = DeepLabHead(self.num_classes, self.head_features, rates, self.dropout_rate, self.head_conv,
                             self.norm, self.dtype, name="head")(maps["C5"], train)
        return self.upsample_logits(logits, x)
