"""The SSRF guard: webhook URLs may not reach loopback, private or link-local addresses."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from docintel.webhooks.targets import TargetRefused, check_url, resolve


def _resolving_to(*addresses: str) -> Any:
    """A resolver answering like getaddrinfo: a public name that points inward."""

    def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        family = {True: socket.AF_INET6, False: socket.AF_INET}
        return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolver


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:6379/", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://172.16.5.5/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[64:ff9b::a00:1]/hook", "private"),
    ],
)
def test_internal_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(TargetRefused, match=f"a {reason} address"):
        resolve(url, allow_private=False)


def test_localhost_is_refused_by_what_it_resolves_to() -> None:
    with pytest.raises(TargetRefused, match=r"localhost resolves to (127\.0\.0\.1|::1)"):
        resolve("http://localhost:8000/hook", allow_private=False)


def test_a_public_name_with_any_inward_address_is_refused() -> None:
    resolver = _resolving_to("93.184.215.14", "10.0.0.7")
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.7"):
        resolve("https://hooks.example.com/x", allow_private=False, resolver=resolver)


def test_the_setting_allows_private_targets() -> None:
    target = resolve("http://localhost:8000/hook?a=1", allow_private=True)
    assert target.address in {"127.0.0.1", "::1"}
    assert target.host_header == "localhost:8000"
    host = "127.0.0.1" if target.address == "127.0.0.1" else "[::1]"
    assert target.connect_url == f"http://{host}:8000/hook?a=1"


def test_a_public_target_connects_to_the_checked_address_and_keeps_its_name() -> None:
    resolver = _resolving_to("93.184.215.14")
    target = resolve("https://user:pw@hooks.example.com/in", allow_private=False, resolver=resolver)
    assert target.connect_url == "https://user:pw@93.184.215.14:443/in"
    assert (target.hostname, target.host_header) == ("hooks.example.com", "hooks.example.com")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost", "http://h:port/"]
)
def test_only_http_urls_with_a_host_are_taken(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url(url)


def test_an_unresolvable_name_is_an_oserror_not_a_refusal() -> None:
    with pytest.raises(OSError):
        resolve("http://no-such-host.invalid/x", allow_private=False)


def test_an_internationalised_host_travels_as_idna() -> None:
    """Non-ASCII in Host or SNI made every attempt crash outside the delivery's record."""
    asked: list[str] = []

    def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        return _resolving_to("93.184.215.14")(host, port)

    target = resolve("https://bücher.example/hook", allow_private=False, resolver=resolver)
    assert asked == ["xn--bcher-kva.example"]
    assert target.host_header == target.hostname == "xn--bcher-kva.example"
    assert target.connect_url == "https://93.184.215.14:443/hook"
