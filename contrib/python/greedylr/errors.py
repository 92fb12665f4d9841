"""The exceptions of the greedylr client.

Every error the client raises is a greedylr.Error. An answer of the service that is an
error (RFC 9457 problem+json) becomes an ApiError, or the subclass named after its status,
carrying the status, title and detail the service sent.
"""


class Error(Exception):
    """The base of every error this package raises."""


class ConnectionFailed(Error, ConnectionError):
    """The service could not be reached, even after the retries; the cause is chained."""


class Timeout(Error, TimeoutError):
    """The service did not answer within the client's timeout."""


class ApiError(Error):
    """The service answered with an error.

    Attributes: status (the HTTP status), title and detail (from the problem+json body;
    detail names the field or value at fault), type (the problem's URN, or None when the
    answer was not problem+json), method and path (the request that failed).
    """

    def __init__(self, status, title, detail, type=None, method=None, path=None):
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self):
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.status} {self.title}: {self.detail}{where}"

    def __reduce__(self):
        return (type(self), (self.status, self.title, self.detail, self.type, self.method,
                             self.path))


class BadRequest(ApiError):
    """400: the body was not valid JSON."""


class NotFound(ApiError, LookupError):
    """404: there is no such job."""


class Conflict(ApiError):
    """409: the request contradicts what the service holds (a job id taken with another
    config, the same step with another loss, a report to a finished job, ...)."""


class InvalidValue(ApiError, ValueError):
    """422: a field or parameter has a value the service does not accept."""


class Unauthorized(ApiError):
    """401: no API token, or not a valid one (see Client's token)."""


class Forbidden(ApiError, PermissionError):
    """403: the token's role may not do this (a reader writing, a writer deleting)."""


class TooManyWaiting(ApiError):
    """429: too many requests wait on this job already, or the token's rate limit is
    reached; the client waits as Retry-After says and sends the request again."""


class Unavailable(ApiError):
    """503: the service is stopping or out of memory; the request may be sent again."""


class QuotaReached(ApiError):
    """507: a bound on what the service stores was reached (--max-jobs jobs in its database,
    or --max-reports-per-job steps in this job) and nothing was stored; sending the same
    request again does not help: delete finished jobs, or rewind the job or start another."""


class ServerError(ApiError):
    """500 and other 5xx answers: the service failed (its database, most likely)."""


# The exception class of each status; other statuses raise ApiError (or ServerError).
BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidValue,
    429: TooManyWaiting,
    503: Unavailable,
    507: QuotaReached,
}


def from_status(status):
    """The exception class for an HTTP status."""
    if status in BY_STATUS:
        return BY_STATUS[status]
    return ServerError if status >= 500 else ApiError
