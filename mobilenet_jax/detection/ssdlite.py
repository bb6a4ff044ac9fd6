"""SSDLite (MobileNetV2 Sec. 6.2; MobileNetV3 Sec. 6.3): SSD with every regular convolution of
the prediction layers replaced by a depthwise-separable one, on a MobileNet backbone.

- Backbone: a registered network with `features_only=True`; the first SSDLite layer is
  attached to its C4 (output stride 16), the second to C5 (stride 32), as both papers do.
  MobileNetV2's last conv (C5) is scaled by `width` below 1 as well (`scale_last_conv`), as
  the TF object detection API builds it: at width 1 nothing changes, below 1 that layer no
  longer loads classification weights (1280 channels there).
- Extra feature layers: four more maps, each 1x1 conv to d/2 -> 3x3 depthwise stride 2 ->
  1x1 conv to d, all with BN + ReLU6, d = 512, 256, 256, 128 (the TF object detection API's
  SSDLite feature-map depths), scaled by `width` with a floor of `min_depth` (16).
- Predictors on the 6 maps: 3x3 depthwise conv + BN + ReLU6, then a 1x1 conv with bias to
  k x 4 box codes or k x (1 + num_classes) class logits (index 0 = background); k anchors per
  cell from `anchors.layer_boxes` (3 on the first map, 6 on the others).

Parameters of the backbone live under `backbone/` with the classification network's names,
so `load_backbone` copies converted ImageNet weights into a detector.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.detection.anchors import ASPECT_RATIOS, MAX_SCALE, MIN_SCALE, anchors_per_cell, generate_anchors
from mobilenet_jax.layers import ConvBN
from mobilenet_jax.models.common import Network, check_choice
from mobilenet_jax.models.registry import ModelConfigError, create_model, register

#: Networks with a feature-map API (`features_only`).
BACKBONES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "xception")
EXTRA_DEPTHS: tuple[int, ...] = (512, 256, 256, 128)
NUM_MAPS = 2 + len(EXTRA_DEPTHS)


@register("ssdlite")
class SSDLite(Network):
    """SSDLite detector. `num_classes` counts object classes without the background (90 for
    COCO's category ids, 80 for tfds coco/2017's labels); the logits have 1 + num_classes.

    Fields beyond `Network`'s: `backbone` (a name in `BACKBONES`), `reduced_tail` (V3 Sec. 6.3's
    halved tail; V3 backbones only), `min_depth`, and the anchor settings `min_scale`,
    `max_scale`, `aspect_ratios`. `width` scales the backbone and the extra layers alike.
    `bn_momentum` 0.97 is the TF API SSDLite configs' BatchNorm decay.
    """

    num_classes: int = 90
    bn_momentum: float = 0.97
    backbone: str = "mobilenet_v2"
    reduced_tail: bool = False
    min_depth: int = 16
    min_scale: float = MIN_SCALE
    max_scale: float = MAX_SCALE
    aspect_ratios: tuple[float, ...] = ASPECT_RATIOS

    task: ClassVar[str] = "detection"
    min_resolution: ClassVar[int] = 64
    default_resolution: ClassVar[int] = 320

    def validate(self) -> None:
        super().validate()
        check_choice("SSDLite", "backbone", self.backbone, BACKBONES)
        check_choice("SSDLite", "reduced_tail", self.reduced_tail, (True, False))
        if self.reduced_tail and not self.backbone.startswith("mobilenet_v3"):
            raise ModelConfigError(
                f"SSDLite: reduced_tail is MobileNetV3's detection variant (Sec. 6.3); "
                f"backbone {self.backbone!r} has none"
            )
        if not 0 < self.min_scale <= self.max_scale:
            raise ModelConfigError(f"SSDLite: need 0 < min_scale <= max_scale, got "
                                   f"{self.min_scale}, {self.max_scale}")

    def backbone_network(self) -> Network:
        extra: dict[str, Any] = dict(reduced_tail=True) if self.reduced_tail else {}
        if self.backbone == "mobilenet_v2":  # C5 scales with width, as in the TF API's SSDLite
            extra["scale_last_conv"] = True
        return create_model(
            self.backbone, features_only=True, width=self.width, dtype=self.dtype,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
            bn_axis_name=self.bn_axis_name, depthwise_impl=self.depthwise_impl, **extra,
        )

    @property
    def anchors_per_cell(self) -> list[int]:
        return anchors_per_cell(NUM_MAPS, min_scale=self.min_scale, max_scale=self.max_scale,
                                aspect_ratios=self.aspect_ratios)

    def extra_depths(self) -> list[int]:
        return [max(int(d * self.width), self.min_depth) for d in EXTRA_DEPTHS]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_feature_maps: bool = False):
        """Returns {"box_codes": [B, A, 4], "class_logits": [B, A, 1 + C]} (float32); with
        `return_feature_maps`, the list of the 6 maps the predictors see instead."""
        x = self.check_inputs(x)
        common = dict(norm=self.norm, dtype=self.dtype, depthwise_impl=self.depthwise_impl)
        maps = self.backbone_network().clone(parent=self, name="backbone")(x, train)
        feats = [maps["C4"], maps["C5"]]
        x = maps["C5"]
        for i, depth in enumerate(self.extra_depths()):
            x = ConvBN(depth // 2, name=f"extra_{i}_reduce", **common)(x, train)
            x = ConvBN(depth // 2, 3, strides=2, groups=depth // 2, name=f"extra_{i}_depthwise",
                       **common)(x, train)
            x = ConvBN(depth, name=f"extra_{i}_expand", **common)(x, train)
            feats.append(x)
        if return_feature_maps:
            return feats
        boxes, logits = [], []
        for k, (f, per_cell) in enumerate(zip(feats, self.anchors_per_cell)):
            for kind, size, out in (("box", 4, boxes), ("class", 1 + self.num_classes, logits)):
                y = ConvBN(f.shape[-1], 3, groups=f.shape[-1], name=f"{kind}_{k}_depthwise",
                           **common)(f, train)
                y = nn.Conv(per_cell * size, (1, 1), dtype=self.dtype, name=f"{kind}_{k}_predict")(y)
                out.append(y.reshape(y.shape[0], -1, size))
        return {"box_codes": jnp.concatenate(boxes, 1).astype(jnp.float32),
                "class_logits": jnp.concatenate(logits, 1).astype(jnp.float32)}


def feature_map_sizes(model: SSDLite, image_size: int) -> list[tuple[int, int]]:
    """(height, width) of the 6 maps for square `image_size` inputs (shapes only, no compute)."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    maps, _ = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x, return_feature_maps=True), x)
    return [tuple(m.shape[1:3]) for m in maps]


def model_anchors(model: SSDLite, image_size: int) -> np.ndarray:
    """The anchors [A, 4] matching the model's outputs at `image_size`."""
    return generate_anchors(feature_map_sizes(model, image_size), min_scale=model.min_scale,
                            max_scale=model.max_scale, aspect_ratios=model.aspect_ratios)


def load_backbone(detector_variables: dict, classifier_variables: dict) -> dict:
    """The detector's variables with `backbone/` replaced by the classification network's
    (e.g. converted Keras ImageNet weights). Every backbone leaf must exist in the classifier
    with the same shape; classifier-only leaves (the classifier, V3's pre_logits) are ignored.
    """
    out = {}
    for collection, tree in detector_variables.items():
        if "backbone" not in tree:
            out[collection] = tree
            continue
        source = classifier_variables.get(collection, {})
        flat = traverse_util.flatten_dict(tree["backbone"], sep="/")
        src = traverse_util.flatten_dict(source, sep="/")
        missing = sorted(k for k in flat if k not in src)
        wrong = sorted(k for k in flat if k in src and np.shape(src[k]) != np.shape(flat[k]))
        if missing or wrong:
            raise ValueError(
                f"classifier {collection} do not fit the detector's backbone: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, shape mismatch {wrong[:5]}; was the "
                "classifier built with the same backbone, width and reduced_tail?")
        new_backbone = traverse_util.unflatten_dict({k: src[k] for k in flat}, sep="/")
        out[collection] = {**tree, "backbone": new_backbone}
    return out

