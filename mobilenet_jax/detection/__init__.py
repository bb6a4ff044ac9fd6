"""Object detection on MobileNet backbones: SSDLite (MobileNetV2 Sec. 6.2, MobileNetV3 Sec. 6.3).

anchors.py (default boxes), boxes.py (IoU, box coder), matching.py, loss.py (SSD loss with
hard-negative mining), nms.py (batched fixed-size NMS), ssdlite.py (the detector).
"""
from mobilenet_jax.detection.ssdlite import SSDLite, feature_map_sizes, load_backbone, model_anchors

__all__ = ["SSDLite", "feature_map_sizes", "load_backbone", "model_anchors"]
