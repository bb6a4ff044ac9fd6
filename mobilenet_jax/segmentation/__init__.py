"""Semantic segmentation on MobileNet backbones: LR-ASPP (MobileNetV3 Sec. 6.4) and DeepLabv3
with full or reduced ASPP (MobileNetV2 Sec. 6.3, Mobile DeepLabv3).

`heads.py` holds the heads and the bilinear resize; `models.py` the registered networks
(`lraspp`, `deeplabv3`), each a backbone at output stride 16 or 8 plus a head, with logits
[B, H, W, num_classes] in float32 at the input size. `layout.py` is the batch format and its
checks, `metrics.py` the confusion-matrix metric (mean IoU), `visualize.py` mask figures.
"""
