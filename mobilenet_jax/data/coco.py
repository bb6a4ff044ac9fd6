"""tfds `coco/2017` for detection through tf.data (input only), in the layout of
`mobilenet_jax.data.detection_layout`: boxes (x1, y1, x2, y2) in [0, 1], labels 1..80 (tfds's 80
class indices + 1; 0 is the background), `max_boxes` slots per image.

Augmentation (SSD Sec. 2.2 "Data augmentation", as the TF object detection API's SSDLite
configs use it: `ssd_random_crop` + `random_horizontal_flip`): a random patch that covers at
least a random fraction (0.1, 0.3, 0.5, 0.7 or 0.9) of some object, with aspect ratio in
[0.5, 2] and area in [0.1, 1] of the image (the whole image when no patch is found); the
objects whose centre lies in the patch are kept and clipped to it; then a left-right flip
with probability 1/2; then a resize to `image_size` x `image_size` (no aspect preservation,
as in SSD). Evaluation resizes the whole image. Crowd annotations are dropped from training
(a crowd box is no object to regress to, as in the TF object detection API) and kept in
evaluation batches, flagged in `is_crowd` [M]: COCO's evaluation ignores the detections that
fall on them instead of counting them as false positives. Boxes of zero size are dropped.
Images with more than `max_boxes` objects keep the largest ones. Randomness is stateless,
keyed by (seed, process, example counter), so a resumed run sees the same data.
"""
from __future__ import annotations

from typing import Iterator

from mobilenet_jax.data.pipeline import Batch, HostLayout
from mobilenet_jax.data.tfds import TfdsReader, host_batches, import_tf, padded_eval_batches

NUM_CLASSES = 80
MAX_BOXES = 100
MIN_COVERED = (0.1, 0.3, 0.5, 0.7, 0.9)


def _boxes_xyxy(tf, objects, drop_crowd: bool = True):
    """tfds (ymin, xmin, ymax, xmax) -> (x1, y1, x2, y2), labels + 1, crowd flags; empty boxes
    out, and crowds too with `drop_crowd`."""
    fields = ["bbox", "label"] + (["is_crowd"] if "is_crowd" in objects else [])
    # Equal lengths in real data; tfds mock data draws each field's length on its own.
    n = tf.reduce_min(tf.stack([tf.shape(objects[f])[0] for f in fields]))
    b = objects["bbox"][:n]
    boxes = tf.stack([b[:, 1], b[:, 0], b[:, 3], b[:, 2]], axis=-1)
    labels = tf.cast(objects["label"][:n], tf.int32) + 1
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    crowd = (tf.cast(objects["is_crowd"][:n], tf.bool) if "is_crowd" in fields
             else tf.zeros_like(keep))
    if drop_crowd:
        keep &= tf.logical_not(crowd)
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep), tf.boolean_mask(crowd, keep)


def random_crop(tf, image, boxes, labels, seed):
    """SSD's random patch; boxes whose centre falls outside the patch are dropped."""
    shape = tf.shape(image)
    choice = tf.random.stateless_uniform((), seed, 0, len(MIN_COVERED), dtype=tf.int32)
    covered = tf.gather(tf.constant(MIN_COVERED, tf.float32), choice)
    yxyx = tf.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]], -1)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, yxyx[None], seed=seed + 1, min_object_covered=covered,
        aspect_ratio_range=(0.5, 2.0), area_range=(0.1, 1.0), max_attempts=50,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    y0, x0 = tf.cast(begin[0], tf.float32) / h, tf.cast(begin[1], tf.float32) / w
    ch, cw = tf.cast(size[0], tf.float32) / h, tf.cast(size[1], tf.float32) / w
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centre[:, 0] > x0) & (centre[:, 0] < x0 + cw) & (centre[:, 1] > y0) & (centre[:, 1] < y0 + ch))
    boxes = (boxes - tf.stack([x0, y0, x0, y0])) / tf.stack([cw, ch, cw, ch])
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    inside &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image, tf.boolean_mask(boxes, inside), tf.boolean_mask(labels, inside)


def random_flip(tf, image, boxes, seed):
    flip = tf.random.stateless_uniform((), seed) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    flipped = tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], -1)
    return image, tf.where(flip, flipped, boxes)


def to_layout(tf, image, boxes, labels, image_size: int, max_boxes: int, crowd=None):
    """Resize, scale to [-1, 1], keep the `max_boxes` largest objects, pad the slots; with
    `crowd` flags, also "is_crowd" [max_boxes] (evaluation)."""
    image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    image = tf.cast(image, tf.float32) / 127.5 - 1.0
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    n = tf.minimum(tf.shape(boxes)[0], max_boxes)
    order = tf.argsort(area, direction="DESCENDING", stable=True)[:n]
    boxes, labels = tf.gather(boxes, order), tf.gather(labels, order)
    pad = max_boxes - n
    out = {
        "image": tf.ensure_shape(image, (image_size, image_size, 3)),
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_boxes, 4)),
        "labels": tf.ensure_shape(tf.pad(labels, [[0, pad]]), (max_boxes,)),
        "box_mask": tf.ensure_shape(tf.sequence_mask(n, max_boxes), (max_boxes,)),
    }
    if crowd is not None:
        out["is_crowd"] = tf.ensure_shape(tf.pad(tf.gather(crowd, order), [[0, pad]]), (max_boxes,))
    return out


class CocoDetectionDataset(TfdsReader):
    """tfds coco/2017 as host-local detection batches `[local_devices, per_device, ...]`."""

    def __init__(self, *, image_size: int, batch_size: int, eval_batch_size: int, seed: int,
                 layout: HostLayout, data_dir: str = "", train_split: str = "train",
                 eval_split: str = "validation", shuffle_buffer: int = 1024,
                 num_eval_steps: int = -1, max_boxes: int = MAX_BOXES, name: str = "coco/2017"):
        self._max_boxes = max_boxes
        super().__init__(
            name, image_size=image_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
            seed=seed, layout=layout, train_split=train_split, eval_split=eval_split,
            data_dir=data_dir, shuffle_buffer=shuffle_buffer, num_eval_steps=num_eval_steps,
            num_classes=NUM_CLASSES,
        )

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        tf = import_tf()
        local_batch = self._layout.local_size(self._batch)
        ds, base = self._train_examples(start_step)

        def fn(i, ex):
            seed = tf.stack([tf.constant(base, tf.int64), i])
            boxes, labels, _ = _boxes_xyxy(tf, ex["objects"])
            image, boxes, labels = random_crop(tf, ex["image"], boxes, labels, seed)
            image, boxes = random_flip(tf, image, boxes, seed + 2)
            return to_layout(tf, image, boxes, labels, self._image_size, self._max_boxes)

        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return host_batches(ds, local_batch, self._layout)

    def eval_batches(self) -> Iterator[Batch]:
        tf = import_tf()
        local_batch = self._layout.local_size(self._eval_batch)

        def fn(ex):
            boxes, labels, crowd = _boxes_xyxy(tf, ex["objects"], drop_crowd=False)
            out = to_layout(tf, ex["image"], boxes, labels, self._image_size, self._max_boxes, crowd)
            return {**out, "mask": tf.constant(True)}

        ds = self._read(self._eval_parts[self._layout.process_index], False)
        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        s, m = self._image_size, self._max_boxes
        pad = {"image": tf.zeros((s, s, 3)), "boxes": tf.zeros((m, 4)), "labels": tf.zeros((m,), tf.int32),
               "box_mask": tf.zeros((m,), tf.bool), "is_crowd": tf.zeros((m,), tf.bool), "mask": tf.constant(False)}
        return padded_eval_batches(ds, pad, self.info.num_eval, local_batch, self._layout, self._num_eval_steps)
