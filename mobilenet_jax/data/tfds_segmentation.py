"""tfds semantic-segmentation sets through tf.data (input only): Cityscapes.

`cityscapes/semantic_segmentation` (tfds 4.9: fine labels; train 2975, validation 500, test
1525 frames of 1024x2048; the test split's labels are withheld, all void). Its archives
(leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip) are downloaded by hand after
registering at cityscapes-dataset.com into the manual_dir; data/prepare.py prepares it from
there (`python -m mobilenet_jax.data prepare cityscapes/semantic_segmentation --data-dir DIR
--manual-dir ARCHIVES`). The label ids 0..33 of the png masks map to the 19 train ids of the
benchmark (cityscapesScripts' labels.py); every other id is IGNORE_LABEL (255).

tfds's `voc` builder holds boxes only, no masks, so VOC is not read here. `scene_parse150`
(ADE20K) is not either: tfds 4.9 builds its "annotation" from the challenge's instance
archive (annotations_instance.tar), not from the 150-class scene-parsing masks.

Training (as DeepLab trains MobileNetV2/V3 heads on Cityscapes): each frame is taken at the
evaluation resolution (`eval_size`, default the native 1024x2048), randomly scaled by
[0.5, 2], cropped to `crop_size` (ignore-padded) and flipped (segmentation_augment.py).
Evaluation resizes the image (bilinear, antialiased) and the mask (nearest) to `eval_size`;
at the native size it is the benchmark's full-resolution protocol. Each process reads its own
even share of each split, randomness is stateless, keyed by (seed, process, example counter):
a resumed run sees the data an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import numpy as np

from mobilenet_jax.data.pipeline import Batch, HostLayout
from mobilenet_jax.data.segmentation_augment import SegmentationAugment, tf_augment
from mobilenet_jax.data.tfds import TfdsReader, host_batches, import_tf, padded_eval_batches
from mobilenet_jax.segmentation.layout import IGNORE_LABEL, SegmentationInputError, check_batch

CITYSCAPES = "cityscapes/semantic_segmentation"
CITYSCAPES_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
# cityscapesScripts labels.py: label id -> train id for the 19 evaluated classes.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                        24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_SHAPE_MARK = "segmentation mask and image differ in size"


def label_table(train_ids: dict[int, int], ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """[256] int32: a stored label value (uint8 png) -> its train id, `ignore_label` if none."""
    table = np.full(256, ignore_label, np.int32)
    for label, train_id in train_ids.items():
        table[label] = train_id
    return table


@dataclasses.dataclass(frozen=True)
class SegmentationSource:
    """How to read one tfds segmentation set: its features, label map and splits."""

    name: str
    image_key: str
    label_key: str
    class_names: tuple[str, ...]
    train_ids: dict[int, int]
    train_split: str
    eval_split: str
    native_size: tuple[int, int]  # (height, width) of its frames

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


SOURCES = {
    CITYSCAPES: SegmentationSource(CITYSCAPES, "image_left", "segmentation_label", CITYSCAPES_CLASS_NAMES,
                                   CITYSCAPES_TRAIN_IDS, "train", "validation", (1024, 2048)),
}


class TfdsSegmentationDataset(TfdsReader):
    """A tfds segmentation set as host-local batches {"image": [D, n, h, w, 3] float32 in
    [-1, 1], "segmentation": [D, n, h, w] int32} (train: crop_size; eval: eval_size, plus
    "mask" [D, n]). The builder, split sizes and per-process shares are `TfdsReader`'s."""

    def __init__(self, name: str = CITYSCAPES, *, crop_size: int | tuple[int, int], batch_size: int,
                 eval_batch_size: int, seed: int, layout: HostLayout, data_dir: str = "",
                 train_split: str = "", eval_split: str = "", eval_size: Optional[tuple[int, int]] = None,
                 shuffle_buffer: int = 256, num_eval_steps: int = -1,
                 augmentation: SegmentationAugment = SegmentationAugment()):
        if name not in SOURCES:
            raise ValueError(f"unknown tfds segmentation set {name!r}; known: {sorted(SOURCES)}")
        self.source = source = SOURCES[name]
        self._crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self._eval_size = tuple(eval_size) if eval_size else source.native_size
        self._augmentation = augmentation
        self._table = label_table(source.train_ids, augmentation.ignore_label)
        super().__init__(
            name, image_size=self._crop[0], batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed,
            layout=layout, train_split=train_split or source.train_split,
            eval_split=eval_split or source.eval_split, data_dir=data_dir, shuffle_buffer=shuffle_buffer,
            num_eval_steps=num_eval_steps, num_classes=source.num_classes)

    def _decode(self, tf, ex):
        """(image [H, W, 3] float32 in [-1, 1], train ids [H, W] int32), shapes checked."""
        image, label = ex[self.source.image_key], ex[self.source.label_key]
        label = label[..., 0] if label.shape.rank == 3 else label
        check = tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(label)[:2], message=_SHAPE_MARK)
        with tf.control_dependencies([check]):
            seg = tf.gather(tf.constant(self._table), tf.cast(label, tf.int32))
        return tf.cast(image, tf.float32) / 127.5 - 1.0, seg

    def _checked(self, batches: Iterator[Batch], split: str) -> Iterator[Batch]:
        """Batches checked against the layout; the tf.data shape check as a one-line error."""
        tf = import_tf()
        try:
            for batch in batches:
                check_batch(batch, self.source.num_classes, ignore_label=self._augmentation.ignore_label)
                yield batch
        except tf.errors.InvalidArgumentError as e:
            if _SHAPE_MARK not in str(e):
                raise
            raise SegmentationInputError(
                f"{self.source.name} {split}: an example's {self.source.label_key} and {self.source.image_key} "
                f"differ in height and width; the mask needs one label per image pixel (re-prepare the data "
                f"set: python -m mobilenet_jax.data prepare {self.source.name})") from None

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        tf = import_tf()
        local_batch = self._layout.local_size(self._batch)
        ds, base = self._train_examples(start_step)
        eval_h, eval_w = self._eval_size

        def fn(i, ex):
            seed = tf.stack([tf.constant(base, tf.int64), i])
            image, seg = self._decode(tf, ex)
            # At the evaluation resolution on average: the scale range multiplies eval/native.
            shape = tf.cast(tf.shape(seg), tf.float32)
            base_scale = tf.minimum(eval_h / shape[0], eval_w / shape[1])
            image, seg = tf_augment(tf, image, seg, seed, self._augmentation, self._crop, base_scale)
            return {"image": image, "segmentation": seg}

        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return self._checked(host_batches(ds, local_batch, self._layout), self._train_split)

    def eval_batches(self) -> Iterator[Batch]:
        tf = import_tf()
        local_batch = self._layout.local_size(self._eval_batch)
        size = self._eval_size

        def fn(ex):
            image, seg = self._decode(tf, ex)
            image = tf.image.resize(image, size, method="bilinear", antialias=True)
            seg = tf.image.resize(seg[..., None], size, method="nearest")[..., 0]
            return {"image": tf.ensure_shape(tf.clip_by_value(image, -1.0, 1.0), size + (3,)),
                    "segmentation": tf.ensure_shape(tf.cast(seg, tf.int32), size), "mask": tf.constant(True)}

        ds = self._read(self._eval_parts[self._layout.process_index], False)
        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        pad = {"image": tf.zeros(size + (3,)), "mask": tf.constant(False),
               "segmentation": tf.fill(size, tf.constant(self._augmentation.ignore_label, tf.int32))}
        batches = padded_eval_batches(ds, pad, self.info.num_eval, local_batch, self._layout, self._num_eval_steps)
        return self._checked(batches, self._eval_split)


__all__ = ["CITYSCAPES", "CITYSCAPES_CLASS_NAMES", "CITYSCAPES_TRAIN_IDS", "SOURCES", "SegmentationSource",
           "TfdsSegmentationDataset", "label_table"]
