"""Which webhook URLs may be called, and the address a delivery connects to.

A webhook URL comes from a client, and the worker that calls it sits inside
your network: aimed at ``http://169.254.169.254/`` or ``http://localhost:6379``
it would make docintel probe the cloud metadata service or Redis for them
(server-side request forgery). So a URL is refused when any address its host
resolves to is loopback, link-local, private, reserved, multicast, unspecified
or otherwise not globally routable, unless ``DOCINTEL_WEBHOOK_ALLOW_PRIVATE``.

DNS rebinding (a name that resolves to a public address when checked and to
127.0.0.1 when connected) is closed by resolving once per attempt, checking
those addresses, and connecting to the checked address itself; the URL's host
still goes in the ``Host`` header and in TLS (SNI and certificate checks).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]


class TargetRefused(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # as given
    connect_url: str  # the same URL with the checked address in place of the host
    host_header: str
    hostname: str  # for TLS: SNI and the certificate check
    address: str


def check_url(url: str) -> SplitResult:
    """The checks that need no DNS: an http(s) URL with a host, of sane length."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise TargetRefused(f"{url!r} is not an http or https URL")
    if not parts.hostname:
        raise TargetRefused(f"{url!r} names no host")
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        raise TargetRefused(f"{url!r} has a bad port") from None
    return parts


def resolve(url: str, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> Target:
    """Resolve ``url``'s host, refuse forbidden addresses, and say where to connect.

    Raises ``TargetRefused`` for a URL that may not be called and ``OSError``
    (``socket.gaierror``) when the name does not resolve, which may pass.
    """
    parts = check_url(url)
    host = _ascii_host(parts.hostname or "")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    addresses = _addresses(host, port, resolver)
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason:
                raise TargetRefused(
                    f"{host} resolves to {address}, a {reason} address; webhooks to such "
                    "addresses need DOCINTEL_WEBHOOK_ALLOW_PRIVATE=true"
                )
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{literal}:{port}" if userinfo else f"{literal}:{port}"
    host_literal = f"[{host}]" if ":" in host else host
    return Target(
        url=url,
        connect_url=parts._replace(netloc=netloc).geturl(),
        host_header=host_literal if parts.port is None else f"{host_literal}:{parts.port}",
        hostname=host,
        address=str(address),
    )


def _ascii_host(host: str) -> str:
    """An internationalised name as DNS, HTTP's Host and TLS's SNI carry it (IDNA)."""
    try:
        host.encode("ascii")
        return host
    except UnicodeEncodeError:
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise TargetRefused(f"{host!r} is not a valid host name: {error}") from None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why a webhook may not reach ``address`` by default; None if it may."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return forbidden_reason(embedded)
    for reason, matches in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),  # e.g. 100.64.0.0/10, shared by carriers
    ):
        if matches:
            return reason
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:127.0.0.1, NAT64, 6to4)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _addresses(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    infos = resolver(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        # An IPv6 link-local answer carries its zone ("fe80::1%eth0").
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(f"{host} resolves to no address")
    return addresses
