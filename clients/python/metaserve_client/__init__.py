"""Python client for Metaserve: adapt a meta-learner to your few-shot task, then predict.

    from metaserve_client import Client
    with Client("http://127.0.0.1:8000", api_key="ms_...") as client:
        model = client.adapted_models.create("sinusoid-maml", [[-2.0], [0.0], [1.5]], [-1.2, -0.96, 1.68])
        print(model.predict([[0.5]]))
"""

from metaserve_client.async_client import AsyncClient
from metaserve_client.client import Client
from metaserve_client.errors import (
    APIError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    IncompatibleServer,
    JobFailed,
    MetaLearnerRetired,
    MetaserveError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
    WaitTimeout,
)
from metaserve_client.models import AdaptationReport, AdaptedModel, ClassPrediction, MetaLearner

__version__ = "0.1.0"
__all__ = [
    "APIError", "AdaptationReport", "AdaptedModel", "AsyncClient", "BadRequest", "ClassPrediction",
    "Client", "Conflict", "ConnectionFailed", "IncompatibleServer", "JobFailed", "MetaLearner",
    "MetaLearnerRetired", "MetaserveError", "MethodNotAllowed", "NotFound", "PayloadTooLarge",
    "RateLimited", "ServerError", "ServiceUnavailable", "Unauthorized", "ValidationError",
    "WaitTimeout",
]
