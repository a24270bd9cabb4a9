"""The one client for MediaWiki's Action API that every model server uses.

`mwapi.AsyncSession` does the API calls; all sessions of a process share one `aiohttp.ClientSession`, so
connections are pooled and reused across requests and wikis. On top of mwapi this module adds what a
production server needs: the `Host` header for the internal endpoint, a hard timeout per attempt,
retries with capped exponential backoff for transient failures, and one mapping of failures to errors.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import mwapi
import mwapi.errors

from wikiserve import metrics
from wikiserve.config import MediaWikiSettings
from wikiserve.errors import InvalidRequest, MediaWikiError, MediaWikiTimeout, MediaWikiUnavailable

logger = logging.getLogger(__name__)

# API error codes worth another try: the wiki is busy or briefly refusing writes/reads.
TRANSIENT_API_ERRORS = {"maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryError"}
TRANSIENT_HTTP_STATUSES = {429, 500, 502, 503, 504}
# API error codes that describe the request's subject (no such revision or page, hidden text), not an outage.
CLIENT_API_ERRORS = {"nosuchrevid", "badrevids", "missingtitle", "nosuchpageid", "permissiondenied"}


class HTTPStatusFailure(Exception):
    """Raised by the shared aiohttp session for any HTTP error status, before mwapi tries to parse JSON."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status >= 400:
        raise HTTPStatusFailure(response.status, _retry_after_seconds(response.headers.get("Retry-After")))


def _retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds: either delay-seconds or an HTTP date (RFC 9110 allows both); None when absent
    or unreadable (our own backoff applies). Callers cap it."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a date without a zone is read as such
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Transient(Exception):
    """One failed attempt that another attempt may fix."""

    def __init__(self, error: MediaWikiError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class MediaWikiPool:
    """Owns the process-wide aiohttp session and hands out per-wiki clients.

    The aiohttp session must be created inside the running event loop, so it is made on first use.
    """

    def __init__(self, settings: MediaWikiSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    def http_session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ttl_dns_cache=300)
            self._http = aiohttp.ClientSession(connector=connector, raise_for_status=_raise_for_status)
        return self._http

    def client(self, domain: str) -> MediaWikiClient:
        """A client for the wiki whose public domain is `domain` (e.g. `en.wikipedia.org`)."""
        return MediaWikiClient(self, domain)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class MediaWikiClient:
    """Action API calls for one wiki; cheap to create, shares its pool's connections."""

    def __init__(self, pool: MediaWikiPool, domain: str) -> None:
        self.pool = pool
        self.domain = domain
        self.settings = pool.settings
        self.base_url, self.host_header = self.settings.endpoint_for(domain)
        self._session: mwapi.AsyncSession | None = None

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/w/api.php"

    def _mwapi_session(self) -> mwapi.AsyncSession:
        http = self.pool.http_session()
        if self._session is None or self._session.session is not http:
            session = mwapi.AsyncSession(
                self.base_url,
                user_agent=self.settings.user_agent,
                formatversion=2,
                timeout=self.settings.timeout_s,
                session=http,
            )
            if self.host_header:
                session.headers["Host"] = self.host_header
            self._session = session
        return self._session

    async def get(self, **params: Any) -> dict:
        """One GET to the Action API (formatversion=2), retried while the failure is transient."""
        action = str(params.get("action", "?"))
        started = time.monotonic()
        attempts = max(1, self.settings.attempts)
        for attempt in range(1, attempts + 1):
            try:
                doc = await self._attempt(params)
                metrics.mediawiki_latency(action).observe(time.monotonic() - started)
                return doc
            except _Transient as failure:
                metrics.MEDIAWIKI_ERRORS.labels(kind=failure.error.kind).inc()
                if attempt == attempts:
                    raise failure.error from None
                delay = self._backoff(attempt, failure.retry_after)
                logger.warning(
                    "MediaWiki API call failed, retrying",
                    extra={
                        "wiki": self.domain,
                        "attempt": attempt,
                        "error": failure.error.message,
                        "retry_in_s": round(delay, 3),
                    },
                )
                await asyncio.sleep(delay)
            except MediaWikiError as error:
                metrics.MEDIAWIKI_ERRORS.labels(kind=error.kind).inc()
                raise
        raise AssertionError("unreachable")

    async def query_continued(self, max_docs: int = 100, **params: Any) -> AsyncIterator[dict]:
        """Yields each page of a `continue`-style query, at most `max_docs` pages."""
        params = dict(params, action=params.get("action", "query"))
        params.setdefault("continue", "")
        for _ in range(max_docs):
            doc = await self.get(**params)
            yield doc
            if "continue" not in doc:
                return
            params.update(doc["continue"])

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = self.settings.backoff_cap_s
        if retry_after is not None:
            return min(retry_after, cap)
        exponential = min(cap, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return exponential * random.uniform(0.5, 1.0)  # jitter: don't retry in lock-step with others

    @property
    def _name(self) -> str:
        """How errors name the API to the client: by its wiki, never by the internal endpoint's URL."""
        return f"MediaWiki API of {self.domain}"

    def _log_detail(self, what: str, error: BaseException) -> None:
        """The endpoint and the low-level error (which can name internal hosts) go to the log only."""
        logger.warning(what, extra={"wiki": self.domain, "endpoint": self.api_url,
                                    "error": str(error) or type(error).__name__})

    async def _attempt(self, params: dict[str, Any]) -> dict:
        session = self._mwapi_session()
        try:
            # mwapi's own timeout covers reading; this bounds the whole call, connection included.
            async with asyncio.timeout(self.settings.timeout_s):
                return await session.get(**params)
        except mwapi.errors.APIError as error:
            raise self._api_error(error) from None
        except (TimeoutError, mwapi.errors.TimeoutError):
            raise _Transient(
                MediaWikiTimeout(f"{self._name} did not answer within {self.settings.timeout_s:g} s")
            ) from None
        except mwapi.errors.ConnectionError as error:
            self._log_detail("MediaWiki API unreachable", error)
            raise _Transient(MediaWikiUnavailable(f"{self._name} is unreachable")) from None
        except mwapi.errors.RequestError as error:
            raise self._request_error(error) from None
        except ValueError as error:  # mwapi: the body was not JSON
            self._log_detail("MediaWiki API answered with invalid JSON", error)
            raise _Transient(MediaWikiError(f"{self._name} answered with invalid JSON")) from None

    def _request_error(self, error: Exception) -> _Transient | MediaWikiError:
        cause = error.__cause__
        if isinstance(cause, mwapi.errors.APIError):  # mwapi wraps API errors raised inside its request
            return self._api_error(cause)
        if isinstance(cause, HTTPStatusFailure):
            message = f"{self._name} answered HTTP {cause.status}"
            if cause.status in TRANSIENT_HTTP_STATUSES:
                kind = "rate_limited" if cause.status == 429 else "http_5xx"
                return _Transient(MediaWikiUnavailable(message, kind=kind), cause.retry_after)
            return MediaWikiError(message, kind="http_4xx")
        if isinstance(cause, aiohttp.ClientPayloadError):
            return _Transient(MediaWikiError(f"{self._name} sent a truncated response"))
        self._log_detail("MediaWiki API request failed", cause or error)
        return _Transient(MediaWikiUnavailable(f"The request to the {self._name} failed"))

    def _api_error(self, error: mwapi.errors.APIError) -> _Transient | MediaWikiError | InvalidRequest:
        code = str(error.code)[:100]
        info = str(error.info)[:300]  # MediaWiki's own words, which may quote a title from the request
        message = f"{self._name} returned error '{code}': {info}"
        if code in TRANSIENT_API_ERRORS or code.startswith("internal_api_error_"):
            return _Transient(MediaWikiUnavailable(message, kind=f"api_{_metric_code(code)}", api_code=code))
        if code in CLIENT_API_ERRORS:
            return InvalidRequest(message, api_code=code)
        return MediaWikiError(message, kind="api_error", api_code=code)


def _metric_code(code: str) -> str:
    """Keeps metric label values few: internal_api_error_* collapses to one label."""
    return "internal_api_error" if code.startswith("internal_api_error_") else code
