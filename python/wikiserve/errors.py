"""The errors a model server answers with, each carrying its HTTP status.

Anything raised while serving a request is either one of these (a message meant for the client) or an
unexpected exception, which the server answers with a generic 500 and logs (never a traceback to the client).
"""

from __future__ import annotations


class ServingError(Exception):
    """An error with a message for the client and an HTTP status."""

    status: int = 500

    def __init__(
        self, message: str, api_code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # The MediaWiki API error code behind this error, if any (e.g. "nosuchrevid"), for callers that
        # turn a specific code into a more specific message.
        self.api_code = api_code
        # Response headers the error answers with (e.g. Retry-After of a 503 for overload).
        self.headers = headers or {}


class InvalidRequest(ServingError):
    """The request body is malformed or asks for something impossible (400)."""

    status = 400


class PayloadTooLarge(ServingError):
    """The request body is over the configured limit (413)."""

    status = 413


class RequestTimeout(ServingError):
    """The request's body did not arrive within REQUEST_READ_TIMEOUT_S (408; the connection is closed)."""

    status = 408


class MediaWikiError(ServingError):
    """The MediaWiki Action API failed us; `kind` labels the failure in metrics and logs."""

    status = 502
    kind = "bad_response"

    def __init__(self, message: str, kind: str | None = None, api_code: str | None = None) -> None:
        super().__init__(message, api_code)
        if kind is not None:
            self.kind = kind


class MediaWikiUnavailable(MediaWikiError):
    """Unreachable, overloaded (5xx, 429) or refusing service (read-only, rate-limited) after retries."""

    status = 503
    kind = "unavailable"


class MediaWikiTimeout(MediaWikiError):
    status = 504
    kind = "timeout"
