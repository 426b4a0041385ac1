"""One HTTP attempt of a webhook, to the address the SSRF check approved."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx

from app.delivery.addresses import Target
from app.kit.http import parse_retry_after, tls_context

# Only the start of a receiver's answer is read and kept.
EXCERPT_BYTES = 1024


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None
    excerpt: str | None = None
    # The address connected to, if any.
    address: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(target: Target, *, body: str, headers: dict[str, str], timeout: float) -> Outcome:
    """POST ``body`` to ``target``'s checked address, presenting its host name.

    Redirects are not followed (a redirect could lead anywhere); they count as failures.
    """
    request_headers = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": "thrifty-webhooks/0.1",
    }
    # TLS: present and verify the original name, although the URL holds the address.
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    started = time.monotonic()
    outcome = Outcome(None, "no address to connect to", 0)
    with httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=tls_context()
    ) as client:
        for address in target.addresses:
            outcome = _post_once(
                client, target.pinned_url(address), body, request_headers, extensions, started
            )
            outcome = replace(outcome, address=str(address))
            # Only a refused connection moves on to the next address; anything else reached
            # the receiver (or may have), so it is this attempt's outcome.
            if not (outcome.error or "").startswith("ConnectError"):
                return outcome
    return outcome


def _post_once(
    client: httpx.Client,
    url: str,
    body: str,
    headers: dict[str, str],
    extensions: dict[str, str],
    started: float,
) -> Outcome:
    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    timeout = client.timeout.read or 0
    try:
        with client.stream(
            "POST", url, content=body.encode(), headers=headers, extensions=extensions
        ) as response:
            excerpt = b""
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), now=datetime.now(UTC)
            )
            ok = 200 <= response.status_code < 300
            return Outcome(
                status_code=response.status_code,
                error=None if ok else f"receiver answered {response.status_code}",
                duration_ms=elapsed(),
                retry_after=retry_after,
                excerpt=excerpt[:EXCERPT_BYTES].decode(errors="replace") or None,
            )
    except httpx.TimeoutException as exc:
        return Outcome(None, f"timed out after {timeout:g} s ({type(exc).__name__})", elapsed())
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}", elapsed())
