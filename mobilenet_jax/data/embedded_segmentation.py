"""An embedded semantic-segmentation data set drawn in numpy: no download, no TensorFlow.

The scenes of `embedded_detection` (a random background colour, 1..`max_objects` shapes of
`embedded`'s ten kinds, each of random size, position and contrasting colour, boxes
overlapping by at most a tenth of the smaller one), with per-pixel labels instead of boxes:
0 on the background, k + 1 on the pixels of a shape of kind `classes[k]` (its anti-aliased
coverage at least a half; a later shape covers an earlier one), and IGNORE_LABEL (255) on a
band `boundary` pixels wide along every shape's outline, as VOC marks object boundaries:
those pixels are blends of the two colours, neither class. `noise` is the range of the
per-image Gaussian pixel noise's standard deviation (images span [-1, 1]).
Deterministic: the same (split, size, resolution, seed, drawing knobs) gives the same arrays;
"train", "validation" and "eval" are independent draws (seeds apart from the other sets').

`EmbeddedSegmentationDataset` serves the arrays in the host-batch contract of pipeline.py:
{"image": [D, n, S, S, 3] float32, "segmentation": [D, n, S, S] int32}, evaluation batches
padded and masked ("mask" [D, n]), training batches augmented (segmentation_augment.py) with
a generator keyed by (seed, step, position in the global batch), so the data of a device at a
step does not depend on the process count, and a resumed run sees what an uninterrupted one would.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Optional, Sequence

import numpy as np

from mobilenet_jax.data.embedded import CLASS_NAMES, NUM_CLASSES
from mobilenet_jax.data.embedded_detection import NOISE, add_noise, draw_scene
from mobilenet_jax.data.pipeline import ArrayDataset, Batch, DatasetInfo, HostLayout
from mobilenet_jax.data.segmentation_augment import SegmentationAugment, augment
from mobilenet_jax.segmentation.layout import IGNORE_LABEL, check_example

_SPLIT_SEEDS = {"train": 20, "eval": 21, "validation": 22}
SPLITS = tuple(_SPLIT_SEEDS)
BOUNDARY = 1.0  # ignore band width, in pixels (the anti-aliased ring of each outline)


def render_image(rng: np.random.Generator, image_size: int, max_objects: int, min_size: float,
                 max_size: float, classes: Sequence[int] = tuple(range(NUM_CLASSES)),
                 noise: tuple[float, float] = NOISE, boundary: float = BOUNDARY):
    """(image [S, S, 3] float32 in [-1, 1], segmentation [S, S] int32 in 0..len(classes) or
    IGNORE_LABEL): embedded_detection's scene, each shape's pixels labelled with its class and
    a band `boundary` pixels wide along each outline ignored."""
    img, shapes = draw_scene(rng, image_size, max_objects, min_size, max_size, classes)
    seg = np.zeros((image_size, image_size), np.int32)
    half_band = boundary * (2.0 / image_size) / 2  # in [-1, 1] image units
    for shape in shapes:
        seg[shape.inside] = shape.label
        if boundary > 0:
            seg[np.abs(shape.signed_distance) < half_band] = IGNORE_LABEL
    return add_noise(rng, img, noise), seg


def make_split(split: str, num_examples: int, image_size: int = 64, seed: int = 0, *,
               max_objects: int = 4, min_size: float = 0.15, max_size: float = 0.4,
               classes: Optional[Sequence[int]] = None, noise: tuple[float, float] = NOISE,
               boundary: float = BOUNDARY) -> dict[str, np.ndarray]:
    """{"image": [n, S, S, 3] float32 in [-1, 1], "segmentation": [n, S, S] int32}; labels
    0 (background), 1..len(classes) (`classes` indexes CLASS_NAMES; all ten by default) and
    IGNORE_LABEL on the outline band."""
    classes = tuple(range(NUM_CLASSES)) if classes is None else tuple(int(c) for c in classes)
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(range(NUM_CLASSES)):
        raise ValueError(f"classes must be distinct indices into CLASS_NAMES (0..{NUM_CLASSES - 1}), got {classes}")
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_SEEDS)}")
    if max_objects < 1:
        raise ValueError(f"need max_objects >= 1, got {max_objects}")
    if not 0 < min_size <= max_size < 1:
        raise ValueError(f"need 0 < min_size <= max_size < 1, got {min_size}, {max_size}")
    if not 0 <= noise[0] <= noise[1]:
        raise ValueError(f"noise={noise} must be (min, max) with 0 <= min <= max")
    if boundary < 0:
        raise ValueError(f"boundary={boundary} must be >= 0 pixels (0: no ignore band)")
    knobs = [int(round(v * 1000)) for v in (*noise, boundary)] if (tuple(noise), boundary) != (NOISE, BOUNDARY) else []
    rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], num_examples, image_size, *knobs])
    images, segs = zip(*(render_image(rng, image_size, max_objects, min_size, max_size, classes, noise, boundary)
                         for _ in range(num_examples))) if num_examples else ((), ())
    out = {"image": np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.float32),
           "segmentation": np.stack(segs) if segs else np.zeros((0, image_size, image_size), np.int32)}
    check_example(out["image"], out["segmentation"], len(classes) + 1, where=f"embedded_segmentation {split}: ")
    return out


def class_names(classes: Optional[Sequence[int]] = None) -> tuple[str, ...]:
    """Names of the labels 0..len(classes): "background", then the shapes."""
    classes = range(NUM_CLASSES) if classes is None else classes
    return ("background",) + tuple(CLASS_NAMES[c] for c in classes)


class EmbeddedSegmentationDataset:
    """Segmentation arrays in host memory as host-local batches (see the module doc)."""

    def __init__(self, info: DatasetInfo, train: dict[str, np.ndarray], eval: dict[str, np.ndarray], *,
                 batch_size: int, eval_batch_size: int, seed: int, layout: HostLayout,
                 num_eval_steps: int = -1, augmentation: Optional[SegmentationAugment] = SegmentationAugment()):
        for name, arrays in (("train", train), ("eval", eval)):
            if set(arrays) != {"image", "segmentation"}:
                raise ValueError(f"{info.name} {name}: need exactly image and segmentation arrays, "
                                 f"got {sorted(arrays)}")
            check_example(arrays["image"], arrays["segmentation"], info.num_classes, where=f"{info.name} {name}: ")
        self.info = info
        self._arrays = ArrayDataset(info, train, eval, batch_size=batch_size, eval_batch_size=eval_batch_size,
                                    seed=seed, layout=layout, num_eval_steps=num_eval_steps)
        self._train, self._batch, self._seed, self._layout = train, batch_size, seed, layout
        self._augmentation = augmentation

    @property
    def steps_per_epoch(self) -> int:
        return self._arrays.steps_per_epoch

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        if self._augmentation is None:
            yield from self._arrays.train_batches(start_step)
            return
        part = self._layout.process_slice(self._batch)
        for step in itertools.count(start_step):
            idx = self._arrays.train_indices(step)[part]
            positions = range(part.start, part.stop)
            pairs = [augment(self._train["image"][i], self._train["segmentation"][i],
                             np.random.default_rng([self._seed, step, p]), self._augmentation)
                     for i, p in zip(idx, positions)]
            yield {"image": self._layout.shard(np.stack([p[0] for p in pairs])),
                   "segmentation": self._layout.shard(np.stack([p[1] for p in pairs]))}

    def eval_batches(self) -> Iterator[Batch]:
        return self._arrays.eval_batches()


def build(*, image_size: int, num_train: int, num_eval: int, batch_size: int, eval_batch_size: int,
          seed: int, layout: HostLayout, eval_split: str = "eval", draw_seed: Optional[int] = None,
          num_eval_steps: int = -1, augmentation: Optional[SegmentationAugment] = SegmentationAugment(),
          **drawing) -> EmbeddedSegmentationDataset:
    """The train split and `eval_split` ("validation" or "eval") drawn with `draw_seed`
    (default `seed`) and the `drawing` knobs of `make_split`, as a data set."""
    draw = seed if draw_seed is None else draw_seed
    train = make_split("train", num_train, image_size, draw, **drawing)
    evals = make_split(eval_split, num_eval, image_size, draw, **drawing)
    classes = drawing.get("classes")
    info = DatasetInfo("embedded_segmentation", num_train, num_eval,
                       len(class_names(classes)), image_size)
    return EmbeddedSegmentationDataset(info, train, evals, batch_size=batch_size, eval_batch_size=eval_batch_size,
                                       seed=seed, layout=layout, num_eval_steps=num_eval_steps,
                                       augmentation=augmentation)


__all__ = ["BOUNDARY", "CLASS_NAMES", "EmbeddedSegmentationDataset", "NOISE", "SPLITS", "build", "class_names",
           "make_split", "render_image"]
