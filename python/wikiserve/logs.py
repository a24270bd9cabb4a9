"""Structured JSON logging, with the request id KServe assigns (`x-request-id`) on every line."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES})
        if record.exc_info:
            # Tracebacks go to the operator's log, never to the client.
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(json_logs: bool, level: str) -> None:
    """One handler on the root logger; KServe's and uvicorn's loggers propagate to it."""
    formatter = (
        {"()": JsonFormatter} if json_logs else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    quiet_loggers = ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default"}},
            "root": {"handlers": ["stderr"], "level": level},
            # Clearing their own handlers (KServe installs some) avoids duplicate, unstructured lines.
            "loggers": {name: {"handlers": [], "propagate": True} for name in quiet_loggers},
        }
    )
    # uvicorn's access log would record every request line; request ids and errors are logged by us.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # KServe's per-request timing lines come twice per request; our metrics carry the same information.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
