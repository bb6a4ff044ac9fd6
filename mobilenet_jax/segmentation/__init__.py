"""Semantic segmentation on MobileNet backbones: the batch layout and its checks (layout.py),
the confusion-matrix metric (metrics.py), and mask figures (visualize.py)."""
