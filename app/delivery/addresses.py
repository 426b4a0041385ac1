"""SSRF policy: which addresses a webhook may be sent to.

A URL is resolved and every address it resolves to must be allowed. Delivery connects to the
very address that was checked (not the name again), so DNS rebinding between the check and
the connection cannot redirect a delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata services: never allowed, whatever the configuration.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


class RefusedURL(ValueError):
    """The URL is malformed, does not resolve, or resolves to an address that is not allowed."""


@dataclass(frozen=True)
class Policy:
    allow_loopback: bool = False
    allow_private: bool = False


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and the name to present (Host header, TLS SNI)."""

    scheme: str
    host: str
    port: int
    path: str
    # Every address the name resolved to, all checked; tried in order.
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def pinned_url(self, address: IPAddress) -> str:
        """The URL with the host replaced by one of the checked addresses."""
        ip = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{ip}:{self.port}{self.path}"


def refusal(address: IPAddress, policy: Policy) -> str | None:
    """What ``address`` is, if ``policy`` refuses it ("a loopback address"), else None."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return refusal(mapped, policy)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified or address.is_multicast:
        return "not a unicast address"
    if address.is_loopback:
        if policy.allow_loopback or policy.allow_private:
            return None
        return "a loopback address (set THRIFTY_WEBHOOK_ALLOW_LOOPBACK to allow it)"
    if address.is_link_local:
        return None if policy.allow_private else "a link-local address"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED):
        if policy.allow_private:
            return None
        return "a private address (set THRIFTY_WEBHOOK_ALLOW_PRIVATE to allow it)"
    if address.is_reserved:
        return "a reserved address"
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedURL(f"{host} does not resolve: {exc}") from exc
    seen: list[IPAddress] = []
    for info in infos:
        # Strip an IPv6 zone ("fe80::1%eth0") before parsing.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def check(url: str, policy: Policy) -> Target:
    """Resolve ``url`` and return where to connect; raises RefusedURL if it is not allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedURL(f"malformed URL: {exc}") from exc
    if parts.scheme not in {"http", "https"}:
        raise RefusedURL("only http and https URLs can receive webhooks")
    if not parts.hostname:
        raise RefusedURL("the URL has no host")
    if parts.username or parts.password:
        raise RefusedURL("credentials in webhook URLs are not supported")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses:
        raise RefusedURL(f"{host} does not resolve")
    for address in addresses:
        reason = refusal(address, policy)
        if reason is not None:
            where = f"{address} is" if host == str(address) else f"{host} resolves to {address},"
            raise RefusedURL(f"{where} {reason}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=parts.scheme, host=host, port=port, path=path, addresses=tuple(addresses))
