"""The model zoo. Importing this package registers every network and detector."""
from mobilenet_jax.models import mobilenet_v1, mobilenet_v2, mobilenet_v3, xception  # noqa: F401
from mobilenet_jax.models.registry import create_model, list_models, model_fields
from mobilenet_jax.detection import ssdlite  # noqa: F401,E402  (registers the detectors)

__all__ = ["create_model", "list_models", "model_fields"]
