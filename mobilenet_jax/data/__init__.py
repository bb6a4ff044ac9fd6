"""Data sets by name: `build_dataset(config, layout)`; see pipeline.py for the batch contract.

"embedded" (generated in numpy, no download), "embedded_detection" (shapes with boxes),
"embedded_segmentation" (the same scenes with per-pixel masks), "coco/2017" (tfds, detection),
"cityscapes/semantic_segmentation" (tfds, manual download, 19 train classes), "synthetic" (random tensors kept on device,
for benchmarks), and the tfds sets "imagenet2012", "imagenette", "cifar10", "cifar100"
(TensorFlow is imported only for these). `prepare_data(config)` prepares a tfds set in
config.data_dir on first use (data/prepare.py); call it before `build_dataset`.
"""
from __future__ import annotations

import ml_collections

from mobilenet_jax.data.pipeline import (
    ArrayDataset, Batch, Dataset, DatasetInfo, HostLayout, host_layout, prefetch_to_device,
)


def _embedded_size(config: ml_collections.ConfigDict, split: str) -> int:
    return {"train": config.embedded_num_train, "validation": config.embedded_num_validation}.get(
        split, config.embedded_num_eval)


def embedded_detection_split(config: ml_collections.ConfigDict, split: str) -> dict:
    """One split ("train" / "validation" / "eval") of the embedded detection set as the config
    describes it."""
    from mobilenet_jax.data import embedded_detection as det

    low, high = config.embedded_detection_object_size
    draw = config.seed if config.embedded_seed < 0 else config.embedded_seed
    return det.make_split(split, _embedded_size(config, split), config.image_size, draw,
                          max_boxes=det.MAX_BOXES if config.max_boxes < 0 else config.max_boxes,
                          classes=tuple(config.embedded_detection_classes) or None,
                          max_objects=config.embedded_detection_max_objects, min_size=low, max_size=high)


def embedded_detection_num_classes(config: ml_collections.ConfigDict) -> int:
    from mobilenet_jax.data.embedded import NUM_CLASSES

    return len(config.embedded_detection_classes) or NUM_CLASSES


def prepare_data(config: ml_collections.ConfigDict) -> None:
    """Makes the tfds set the config names readable in config.data_dir: prepared there on first
    use (by process 0 on a multi-process run), or a DataError that says what to do (see
    data/prepare.py). Nothing to do for the data sets generated in code."""
    from mobilenet_jax.train.config import TFDS_ALL

    if config.dataset in TFDS_ALL:
        from mobilenet_jax.data.prepare import ensure_prepared

        ensure_prepared(config.dataset, config.data_dir, download=config.data_download,
                        manual_dir=config.data_manual_dir)


def build_dataset(config: ml_collections.ConfigDict, layout: HostLayout) -> Dataset:
    """The data set a (validated) config names, laid out for this process's devices."""
    eval_batch = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
    common = dict(
        batch_size=config.batch_size, eval_batch_size=eval_batch, seed=config.seed,
        layout=layout, num_eval_steps=config.num_eval_steps,
    )
    if config.dataset == "embedded":
        from mobilenet_jax.data import embedded

        look = dict(shape_size=tuple(config.embedded_shape_size), noise=tuple(config.embedded_noise))
        eval_split = config.eval_split or "eval"
        num_eval = _embedded_size(config, eval_split)
        draw = config.seed if config.embedded_seed < 0 else config.embedded_seed
        train = embedded.make_split("train", config.embedded_num_train, config.image_size, draw, **look)
        evals = embedded.make_split(eval_split, num_eval, config.image_size, draw, **look)
        classes = embedded.NUM_CLASSES if config.num_classes < 0 else config.num_classes
        info = DatasetInfo("embedded", len(train[1]), len(evals[1]), classes, config.image_size)
        return ArrayDataset(info, train, evals, **common)
    if config.dataset == "embedded_detection":
        train, evals = (embedded_detection_split(config, s) for s in ("train", config.eval_split or "eval"))
        info = DatasetInfo("embedded_detection", config.embedded_num_train, len(evals["image"]),
                           embedded_detection_num_classes(config), config.image_size)
        return ArrayDataset(info, train, evals, **common)
    if config.dataset == "embedded_segmentation":
        from mobilenet_jax.data import embedded_segmentation

        low, high = config.embedded_detection_object_size
        eval_split = config.eval_split or "eval"
        return embedded_segmentation.build(
            image_size=config.image_size, num_train=config.embedded_num_train,
            num_eval=_embedded_size(config, eval_split), eval_split=eval_split,
            draw_seed=None if config.embedded_seed < 0 else config.embedded_seed,
            classes=tuple(config.embedded_detection_classes) or None,
            max_objects=config.embedded_detection_max_objects, min_size=low, max_size=high,
            noise=tuple(config.embedded_noise), **common)
    if config.dataset == "cityscapes/semantic_segmentation":
        from mobilenet_jax.data.tfds_segmentation import TfdsSegmentationDataset

        return TfdsSegmentationDataset(
            config.dataset, crop_size=config.image_size, data_dir=config.data_dir,
            train_split=config.train_split, eval_split=config.eval_split,
            shuffle_buffer=config.shuffle_buffer, **common)
    if config.dataset == "coco/2017":
        from mobilenet_jax.data.coco import MAX_BOXES, CocoDetectionDataset

        return CocoDetectionDataset(
            image_size=config.image_size, data_dir=config.data_dir,
            train_split=config.train_split or "train", eval_split=config.eval_split or "validation",
            shuffle_buffer=config.shuffle_buffer, max_boxes=MAX_BOXES if config.max_boxes < 0 else config.max_boxes,
            **common)
    if config.dataset == "synthetic":
        from mobilenet_jax.data.synthetic import SyntheticDataset, synthetic_info

        classes = config.synthetic_num_classes if config.num_classes < 0 else config.num_classes
        info = synthetic_info(classes, config.image_size, config.batch_size)
        return SyntheticDataset(info, **common)
    from mobilenet_jax.data.tfds import TfdsDataset

    return TfdsDataset(
        config.dataset, image_size=config.image_size, data_dir=config.data_dir,
        train_split=config.train_split, eval_split=config.eval_split,
        shuffle_buffer=config.shuffle_buffer, cache=config.cache,
        num_classes=config.num_classes, **common,
    )


__all__ = [
    "ArrayDataset", "Batch", "Dataset", "DatasetInfo", "HostLayout", "build_dataset",
    "host_layout", "prefetch_to_device", "prepare_data",
]
