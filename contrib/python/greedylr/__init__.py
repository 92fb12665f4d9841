"""greedylr: a client of the greedylr learning-rate service, and a PyTorch scheduler.

    import greedylr
    scheduler = greedylr.RemoteScheduler(optimizer, "my-run")   # torch.optim adapter
    ...
    scheduler.step(val_loss)

    client = greedylr.Client("http://127.0.0.1:8080")           # the whole API
    client.create_job("demo", lr=0.1, config={"patience": 2})
    client.report("demo", step=0, loss=2.3)["lr"]

Standard library only; torch is imported only by RemoteScheduler.
"""

from .client import DEFAULT_URL, Client, new_job_id
from .errors import (ApiError, BadRequest, Conflict, ConnectionFailed, Error, Forbidden,
                     InvalidValue, NotFound, QuotaReached, ServerError, Timeout, TooManyWaiting,
                     Unauthorized, Unavailable)
from .scheduler import RemoteScheduler

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL", "Client", "RemoteScheduler", "new_job_id", "Error", "ApiError",
    "BadRequest", "Conflict", "ConnectionFailed", "InvalidValue", "NotFound", "QuotaReached",
    "ServerError", "Timeout", "TooManyWaiting", "Unavailable", "Unauthorized", "Forbidden",
    "__version__",
]
