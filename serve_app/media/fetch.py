"""Fetch a client-supplied URL without letting the client reach what it should not (SSRF).

Every hop (the first URL and each redirect) is checked before any connection: http(s) only, the
host resolved once, every address it resolves to must be public unless allow-listed, and the
connection then goes to that checked address (no second DNS lookup an attacker could change).
Size and time are capped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, Field

Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchError(ValueError):
    """The URL was refused or could not be read; the message is meant for the client."""


class FetchPolicy(BaseModel):
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 15.0
    max_redirects: int = 3
    allow_private: bool = Field(False, description="allow loopback/private/link-local targets (tests, LANs)")
    allowed_hosts: list[str] = Field(default_factory=list, description="hosts exempt from the address check")


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def default_resolver() -> Resolver:
    """The resolver used when none is passed (tests swap RESOLVER to stub name resolution)."""
    return RESOLVER


RESOLVER: Resolver = system_resolver


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, policy: FetchPolicy, resolver: Resolver | None = None) -> tuple[str, str, int, str]:
    """Validate one hop; returns (scheme, host, port, checked_address)."""
    resolver = resolver or default_resolver()
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port out of range, an unclosed [IPv6 literal, ...
        raise FetchError(f"URL is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are accepted, not {parts.scheme or 'a bare path'}")
    if not host:
        raise FetchError("URL has no host")
    if parts.username or parts.password:
        raise FetchError("URL must not carry credentials")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [host] if _is_ip(host) else await resolver(host, port)
    except OSError:
        raise FetchError(f"host {host} could not be resolved") from None
    if not addresses:
        raise FetchError(f"host {host} could not be resolved")
    exempt = policy.allow_private or host.lower() in {h.lower() for h in policy.allowed_hosts}
    if not exempt:
        for address in addresses:
            if not _is_public(address):
                raise FetchError(f"URL points to a non-public address ({address}); it is refused")
    return parts.scheme, host, port, addresses[0]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _pinned(url: str, host: str, port: int, address: str, scheme: str) -> tuple[str, dict, dict]:
    """The URL with its host replaced by the checked address, plus the Host header and TLS name to keep."""
    parts = urlsplit(url)
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), headers, extensions


async def fetch_url(url: str, policy: FetchPolicy, resolver: Resolver | None = None) -> bytes:
    """GET `url` under `policy`, following at most `max_redirects` checked redirects."""
    import httpx

    for _ in range(policy.max_redirects + 1):
        scheme, host, port, address = await check_url(url, policy, resolver)
        pinned, headers, extensions = _pinned(url, host, port, address, scheme)
        try:
            async with httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False, trust_env=False) as client:
                async with client.stream("GET", pinned, headers={**headers, "Accept": "image/*"},
                                         extensions=extensions) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise FetchError("image URL redirected without a Location")
                        url = urljoin(url, location)
                        continue
                    if resp.status_code != 200:
                        raise FetchError(f"image URL answered HTTP {resp.status_code}")
                    declared = resp.headers.get("content-length") or "0"
                    if declared.isdigit() and int(declared) > policy.max_bytes:
                        raise FetchError(_too_large(policy))
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > policy.max_bytes:
                            raise FetchError(_too_large(policy))
                    return bytes(body)
        except httpx.TimeoutException:
            raise FetchError(f"image URL did not answer within {policy.timeout_s:g} s (the limit is the setting "
                             "image_fetch_timeout_s)") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"image URL could not be read: {type(exc).__name__}") from None
    raise FetchError(f"image URL redirected more than {policy.max_redirects} times")


def _too_large(policy: FetchPolicy) -> str:
    return f"image is larger than {policy.max_bytes} bytes (the limit is the setting image_max_bytes)"


async def post_json(url: str, body: bytes, headers: dict, policy: FetchPolicy,
                    resolver: Resolver | None = None) -> int:
    """POST to a checked address (no redirects followed); returns the status code."""
    import httpx

    scheme, host, port, address = await check_url(url, policy, resolver)
    pinned, host_headers, extensions = _pinned(url, host, port, address, scheme)
    try:
        async with httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False, trust_env=False) as client:
            resp = await client.post(pinned, content=body, headers={**headers, **host_headers},
                                     extensions=extensions)
            return resp.status_code
    except httpx.TimeoutException:
        raise FetchError(f"no answer within {policy.timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"could not connect: {type(exc).__name__}") from None
