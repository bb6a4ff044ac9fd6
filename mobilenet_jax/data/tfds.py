"""tfds data sets through tf.data (input only): imagenet2012, imagenette, cifar10/100.

TensorFlow is imported here and nowhere else, and is hidden from accelerators. Each process
reads its own even share of each split (`jax.process_index()`).

Preprocessing (the MobileNet papers train "with Inception preprocessing", V3 Sec. 6.1.1):
  ImageNet-like train: random crop with area in [8%, 100%] and aspect ratio in [3/4, 4/3]
    (Inception's sample_distorted_bounding_box), resize, random left-right flip.
  ImageNet-like eval: center crop of image_size / (image_size + 32) of the shorter side,
    resize (the 0.875 crop at 224).
  CIFAR train: 4-pixel reflect pad + random 32x32 crop + flip; eval: the image.
  All: resized to config.image_size, scaled to [-1, 1].
Randomness is stateless, keyed by (seed, example counter): the data of step s is the same
in a resumed run as in an uninterrupted one; on resume the skipped examples are read but not
decoded.
"""
from __future__ import annotations

import math
from typing import Iterator

from mobilenet_jax import paths
from mobilenet_jax.data.pipeline import Batch, DatasetInfo, HostLayout, split_evenly

_DEFAULT_SPLITS = {
    "imagenet2012": ("train", "validation"),
    "imagenette": ("train", "validation"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
}
_IMAGENET_LIKE = ("imagenet2012", "imagenette")
_CROP_PADDING = 32


def import_tf():
    """TensorFlow for tf.data, with the GPUs hidden from it."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")  # tf.data only; the accelerators belong to JAX
    return tf


def host_batches(ds, local_batch: int, layout: HostLayout) -> Iterator[Batch]:
    """A tf.data set of examples as this host's numpy batches, deterministic order, split
    along the local devices (the contract of pipeline.py)."""
    tf = import_tf()
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    for batch in ds.with_options(options).as_numpy_iterator():
        yield {k: layout.shard(v) for k, v in batch.items()}


def padded_eval_batches(ds, pad: dict, num_eval: int, local_batch: int, layout: HostLayout,
                        num_eval_steps: int = -1) -> Iterator[Batch]:
    """This process's share of an evaluation split, then `pad` (an example with mask False)
    repeated: every process runs the same number of batches, enough for the largest share
    (at most `num_eval_steps` when >= 0), so the padded sums stay exact."""
    tf = import_tf()
    num_batches = math.ceil(max(split_evenly(num_eval, layout.process_count)) / local_batch)
    if num_eval_steps >= 0:
        num_batches = min(num_batches, num_eval_steps)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat()).take(num_batches * local_batch)
    return host_batches(ds, local_batch, layout)


def _preprocess_fn(name: str, image_size: int, train: bool):
    tf = import_tf()

    def to_float(image):
        image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
        return tf.cast(image, tf.float32) / 127.5 - 1.0

    def imagenet_train(encoded, seed):
        shape = tf.io.extract_jpeg_shape(encoded)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, tf.zeros((1, 0, 4), tf.float32), seed=seed, min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        y, x, _ = tf.unstack(begin)
        h, w, _ = tf.unstack(size)
        image = tf.io.decode_and_crop_jpeg(encoded, tf.stack([y, x, h, w]), channels=3)
        image = tf.image.stateless_random_flip_left_right(image, seed + 1)
        return to_float(image)

    def imagenet_eval(encoded, seed):
        shape = tf.io.extract_jpeg_shape(encoded)
        h, w = shape[0], shape[1]
        crop = tf.cast(
            image_size / (image_size + _CROP_PADDING) * tf.cast(tf.minimum(h, w), tf.float32),
            tf.int32,
        )
        window = tf.stack([(h - crop + 1) // 2, (w - crop + 1) // 2, crop, crop])
        return to_float(tf.io.decode_and_crop_jpeg(encoded, window, channels=3))

    def cifar_train(image, seed):
        image = tf.pad(image, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(image, tf.stack([32, 32, 3]), seed)
        image = tf.image.stateless_random_flip_left_right(image, seed + 1)
        return to_float(image)

    def cifar_eval(image, seed):
        return to_float(image)

    if name in _IMAGENET_LIKE:
        return imagenet_train if train else imagenet_eval
    return cifar_train if train else cifar_eval


class TfdsReader:
    """What the tfds readers share: the builder, each split's size, this process's even share
    of each split, and reading a split. Subclasses add `train_batches` and `eval_batches`."""

    def __init__(
        self, name: str, *, image_size: int, batch_size: int, eval_batch_size: int, seed: int,
        layout: HostLayout, train_split: str, eval_split: str, data_dir: str = "",
        shuffle_buffer: int = 16_384, num_eval_steps: int = -1, num_classes: int = -1,
    ):
        """`num_classes` < 0: the builder's "label" feature's."""
        import tensorflow_datasets as tfds

        import_tf()
        self._name, self._layout, self._seed = name, layout, seed
        self._image_size = image_size
        self._batch, self._eval_batch = batch_size, eval_batch_size
        self._shuffle_buffer, self._num_eval_steps = shuffle_buffer, num_eval_steps
        self._builder = tfds.builder(
            name, data_dir=paths.to_str(data_dir, "config.data_dir") if data_dir else None
        )
        self._train_split, self._eval_split = train_split, eval_split
        if num_classes < 0:
            num_classes = self._builder.info.features["label"].num_classes
        self.info = DatasetInfo(
            name, self._num_examples(train_split), self._num_examples(eval_split),
            num_classes, image_size,
        )
        self._train_part = tfds.even_splits(train_split, n=layout.process_count)[
            layout.process_index
        ]
        self._eval_parts = tfds.even_splits(eval_split, n=layout.process_count)

    @property
    def steps_per_epoch(self) -> int:
        return self.info.num_train // self._batch

    def _train_examples(self, start_step: int):
        """(index, example) pairs of this process's training share, shuffled and repeated, from
        the first example of `start_step` on (a resumed run reads on where it stopped), and the
        base of this process's per-example augmentation seeds (base, index)."""
        ds = self._read(self._train_part, shuffle_files=True).repeat()
        skip = start_step * self._layout.local_size(self._batch)
        return (ds.shuffle(self._shuffle_buffer, seed=self._seed).enumerate().skip(skip),
                self._seed * 1_000_003 + self._layout.process_index)

    def _decoders(self):
        """tfds decoders for `as_dataset` (None: decode every feature)."""
        return None

    def _num_examples(self, split: str) -> int:
        """From the metadata; counted by reading when there is none (tfds mock data)."""
        try:
            return self._builder.info.splits[split].num_examples
        except KeyError:
            ds = self._read(split, shuffle_files=False)
            n = int(ds.cardinality())
            return n if n >= 0 else sum(1 for _ in ds)

    def _read(self, split: str, shuffle_files: bool):
        import tensorflow_datasets as tfds

        return self._builder.as_dataset(
            split=split, shuffle_files=shuffle_files, decoders=self._decoders(),
            read_config=tfds.ReadConfig(shuffle_seed=self._seed, try_autocache=False),
        )


class TfdsDataset(TfdsReader):
    """A tfds data set read through tf.data into host-local numpy batches (see pipeline.py)."""

    def __init__(
        self, name: str, *, image_size: int, batch_size: int, eval_batch_size: int, seed: int,
        layout: HostLayout, data_dir: str = "", train_split: str = "", eval_split: str = "",
        shuffle_buffer: int = 16_384, cache: bool = False, num_eval_steps: int = -1,
        num_classes: int = -1,
    ):
        if name not in _DEFAULT_SPLITS:
            raise ValueError(f"unknown tfds data set {name!r}; known: {sorted(_DEFAULT_SPLITS)}")
        self._cache = cache
        default_train, default_eval = _DEFAULT_SPLITS[name]
        super().__init__(
            name, image_size=image_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
            seed=seed, layout=layout, train_split=train_split or default_train,
            eval_split=eval_split or default_eval, data_dir=data_dir,
            shuffle_buffer=shuffle_buffer, num_eval_steps=num_eval_steps, num_classes=num_classes,
        )

    def _decoders(self):
        import tensorflow_datasets as tfds

        return {"image": tfds.decode.SkipDecoding()} if self._name in _IMAGENET_LIKE else None

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        tf = import_tf()
        local_batch = self._layout.local_size(self._batch)
        ds = self._read(self._train_part, shuffle_files=True)
        if self._cache:
            ds = ds.cache()
        ds = ds.repeat().shuffle(self._shuffle_buffer, seed=self._seed)
        ds = ds.enumerate().skip(start_step * local_batch)
        preprocess = _preprocess_fn(self._name, self._image_size, train=True)
        base = tf.constant([self._seed, self._layout.process_index], tf.int64)

        def fn(i, ex):
            seed = tf.cast(tf.stack([base[0] * 1_000_003 + base[1], i]), tf.int64)
            return {"image": preprocess(ex["image"], seed), "label": tf.cast(ex["label"], tf.int32)}

        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return host_batches(ds, local_batch, self._layout)

    def eval_batches(self) -> Iterator[Batch]:
        tf = import_tf()
        local_batch = self._layout.local_size(self._eval_batch)
        ds = self._read(self._eval_parts[self._layout.process_index], shuffle_files=False)
        if self._cache:
            ds = ds.cache()
        preprocess = _preprocess_fn(self._name, self._image_size, train=False)
        seed0 = tf.zeros(2, tf.int64)
        ds = ds.map(
            lambda ex: {
                "image": preprocess(ex["image"], seed0),
                "label": tf.cast(ex["label"], tf.int32),
                "mask": tf.constant(True),
            },
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
        s = self._image_size
        pad = {"image": tf.zeros((s, s, 3)), "label": tf.constant(0), "mask": tf.constant(False)}
        return padded_eval_batches(ds, pad, self.info.num_eval, local_batch, self._layout, self._num_eval_steps)

