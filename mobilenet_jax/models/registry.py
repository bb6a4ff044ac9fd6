"""The one model registry: `create_model(name, **overrides)` and `list_models()`.

A family registers its networks with `@register(name)` in its own module; `MODEL_MODULES`
names those modules, imported on the first lookup, so adding a family is one line there and
no package imports upward (the detectors live in `mobilenet_jax.detection`).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, TypeVar

import flax.linen as nn

from mobilenet_jax.errors import UserError

#: The modules whose import registers the model families, one line per family.
MODEL_MODULES: tuple[str, ...] = (
    "mobilenet_jax.models.mobilenet_v1",
    "mobilenet_jax.models.mobilenet_v2",
    "mobilenet_jax.models.mobilenet_v3",
    "mobilenet_jax.models.xception",
    "mobilenet_jax.detection.ssdlite",
    "mobilenet_jax.segmentation.models",
)
_MODELS: dict[str, type[nn.Module]] = {}
M = TypeVar("M", bound=type[nn.Module])


class ModelConfigError(UserError, ValueError):
    """A model name, field or field value that cannot build a network."""


def register(name: str) -> Callable[[M], M]:
    """Class decorator adding a network Module to the registry under `name`."""

    def add(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = cls
        return cls

    return add


def _registered() -> dict[str, type[nn.Module]]:
    """The registry, after importing every family (already-imported modules cost a dict lookup,
    and a module still being imported is returned as is: no recursion)."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return _MODELS


def list_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(_registered())


def model_task(name: str) -> str:
    """The task a registered network trains for (its `task` class variable, e.g.
    "classification" or "detection"): the name `mobilenet_jax.tasks.get_task` takes."""
    return _get(name).task


def model_fields(name: str) -> dict[str, dataclasses.Field]:
    """The typed fields (overridable settings) of a registered network."""
    cls = _get(name)
    return {
        f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")
    }


def create_model(name: str, **overrides) -> nn.Module:
    """Builds a registered network, e.g. `create_model("mobilenet_v2", width=0.5)`.

    Unknown names and fields raise `ModelConfigError` listing what is accepted; impossible
    values (a width <= 0, say) are rejected by the network's own validation.
    """
    fields = model_fields(name)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ModelConfigError(
            f"{name} has no field(s) {unknown}; its fields are {sorted(fields)}"
        )
    return _MODELS[name](**overrides)


def _get(name: str) -> type[nn.Module]:
    if not isinstance(name, str) or name not in _registered():
        raise ModelConfigError(f"unknown model {name!r}; known models: {list_models()}")
    return _MODELS[name]
