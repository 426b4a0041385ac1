"""The transport every provider adapter stands on: bounded retries, and no secrets in errors.

Adapters only move bytes through :class:`ProviderHTTP`; what the bytes say (request bodies,
statuses, result lines) is each provider's transformation module (``openai_format``,
``anthropic_format``), which never touches the network.

- 429 and 503 wait for the provider's ``retry-after-ms`` / ``retry-after`` when it sends
  one, otherwise back off like any transient failure;
- 408, 409, other 5xx, connection errors and timeouts retry with exponential backoff and
  full jitter;
- anything else (a 4xx the caller can fix) is not retried;
- every attempt is bounded (``max_attempts``) and so is every wait (``max_wait``);
- a call that creates something at the provider (``create``) is never retried blind: once
  an attempt may have reached the provider (a lost answer, a timeout, a 5xx), every retry
  first looks for what it may have made.

Errors are raised as :class:`ProviderError` whose message names the method, path, status
and the provider's own error message, with the API key scrubbed out of all of it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from app.kit.http import retry_after, tls_context
from app.providers import metrics
from app.providers.base import ProviderError

log = logging.getLogger(__name__)
T = TypeVar("T")

REDACTED = "[redacted]"
# Connections per client, shared by a realtime window's threads; calls beyond it wait.
MAX_CONNECTIONS = 100


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure."""

    max_attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0


class HTTPOptions(TypedDict, total=False):
    """How an adapter's client calls its provider; adapters pass these through unchanged."""

    timeout: float
    policy: RetryPolicy | None
    transport: httpx.BaseTransport | None  # tests and benchmarks swap the network out
    sleep: Callable[[float], None]  # tests record the waits instead of timing them
    # Told of every attempt: False for a 5xx, a 429 or no answer (the circuit breaker).
    observer: Callable[[bool], None] | None


def never_sent(exc: BaseException) -> bool:
    """A failure that proves the provider did not act on the request: no connection was
    made, or it refused the call for its rate limit before doing anything."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 429


def is_transient(exc: BaseException) -> bool:
    """A failure that may go away if the same request is sent again."""
    if isinstance(exc, httpx.TransportError):  # connection errors and timeouts
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code in {408, 409, 429} or code >= 500
    return False


class ProviderHTTP:
    """An ``httpx.Client`` with the retry policy above; thread-safe, as httpx's client is."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        secret: str,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        provider: str = "provider",
        observer: Callable[[bool], None] | None = None,
    ) -> None:
        self._secret = secret
        self._observer = observer
        self._provider = provider
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self.client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
            verify=tls_context(),
        )

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt, told to the observer; raises for a non-2xx answer."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError:
            self._observe(False)
            raise
        self._observe(response.status_code != 429 and response.status_code < 500)
        response.raise_for_status()
        return response

    def _observe(self, ok: bool) -> None:
        if self._observer is not None:
            try:
                self._observer(ok)
            except Exception:  # a breaker must never fail the call it watches
                log.debug("provider observer failed", exc_info=True)

    def _wait(self, state: RetryCallState) -> float:
        policy = self._policy
        backoff = min(policy.max_wait, policy.initial_wait * 2 ** (state.attempt_number - 1))
        wait = random.uniform(0, backoff)  # full jitter: spread out clients retrying together
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in {429, 503}:
            asked = retry_after(exc.response.headers)
            if asked is not None:
                wait = min(policy.max_wait, asked + random.uniform(0, policy.initial_wait / 10))
        return wait

    def _log_retry(self, state: RetryCallState) -> None:
        metrics.PROVIDER_RETRIES.labels(self._provider).inc()
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "provider call failed (%s), retry %d/%d",
            self.redact(_describe(exc)),
            state.attempt_number,
            self._policy.max_attempts - 1,
        )

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._policy.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; return a 2xx response or raise :class:`ProviderError`.

        Only for calls that are safe to repeat (reads, uploads, cancels); see ``create``."""
        try:
            for attempt in self._retrying():
                with attempt:
                    response = self._send(method, path, **kwargs)
                    metrics.PROVIDER_REQUESTS.labels(self._provider, "ok").inc()
                    return response
        except (httpx.HTTPStatusError, httpx.TransportError) as exc:
            raise self._error(method, path, exc) from None
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def create(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[httpx.Response], T],
        recover: Callable[[], T | None],
        **kwargs: Any,
    ) -> T:
        """Send a call that creates something at the provider (a batch) and ``parse`` its
        answer. A retry after a failure that may have reached the provider (``never_sent``
        is false) first calls ``recover`` to look for what that attempt made, and returns
        it instead of creating a second one; only when nothing is found is the call sent
        again."""
        in_doubt = False
        try:
            for attempt in self._retrying():
                with attempt:
                    if in_doubt:
                        found = recover()
                        if found is not None:
                            log.info("%s %s: adopted what an earlier attempt made", method, path)
                            return found
                    try:
                        response = self._send(method, path, **kwargs)
                    except (httpx.HTTPStatusError, httpx.TransportError) as exc:
                        in_doubt = in_doubt or not never_sent(exc)
                        raise
                    metrics.PROVIDER_REQUESTS.labels(self._provider, "ok").inc()
                    return parse(response)
        except (httpx.HTTPStatusError, httpx.TransportError) as exc:
            raise self._error(method, path, exc) from None
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _error(self, method: str, path: str, exc: Exception) -> ProviderError:
        """The call's failure after its retries, counted by outcome."""
        outcome = (
            f"http_{exc.response.status_code}"
            if isinstance(exc, httpx.HTTPStatusError)
            else "transport_error"
        )
        metrics.PROVIDER_REQUESTS.labels(self._provider, outcome).inc()
        if isinstance(exc, httpx.HTTPStatusError):
            response = exc.response
            return ProviderError(
                self.redact(
                    f"{method} {path}: HTTP {response.status_code}: {error_message(response)}"
                ),
                retryable=is_transient(exc),
                status_code=response.status_code,
                code=error_code(response),
            )
        return ProviderError(self.redact(f"{method} {path}: {_describe(exc)}"), retryable=True)

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced, wherever it appears."""
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, REDACTED)
        return text


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if exc is None:
        return "unknown error"
    return type(exc).__name__


def error_code(response: httpx.Response) -> str | None:
    """The error's code (OpenAI ``error.code``) or type (Anthropic ``error.type``), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or error.get("type")
    return str(code) if code else None


def error_message(response: httpx.Response) -> str:
    """The provider's own error message from an OpenAI- or Anthropic-style error body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return response.text[:300]
