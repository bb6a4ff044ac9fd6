"""The one model registry: `create_model(name, **overrides)` and `list_models()`."""
from __future__ import annotations

import dataclasses
from typing import Callable, TypeVar

import flax.linen as nn

from mobilenet_jax.errors import UserError

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


def list_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(_MODELS)


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
    if not isinstance(name, str) or name not in _MODELS:
        raise ModelConfigError(f"unknown model {name!r}; known models: {list_models()}")
    return _MODELS[name]
