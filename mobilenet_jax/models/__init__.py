"""The model zoo: `create_model`, `list_models` and `model_fields` over the one registry
(registry.py), which imports every family, detectors included, on its first lookup."""
from mobilenet_jax.models.registry import create_model, list_models, model_fields, model_task

__all__ = ["create_model", "list_models", "model_fields", "model_task"]
