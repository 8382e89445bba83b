"""Endpoint: a KFP API URL read strictly, and the URL rebuilt from its checked parts.

Credentials go where the HTTP library connects, so a URL that two parsers read differently
(``http://OTHER\\@KFP/`` is KFP to ``urllib.parse`` and OTHER to urllib3) must never be
checked with one and used with the other. ``parse`` accepts only what every parser reads
alike: an http(s) scheme, a DNS name, an IPv4 address or a bracketed IPv6 address, a port and
a plain path; no user info, backslash, percent-encoding, query, fragment, whitespace, control
or non-ASCII character. Callers connect to ``Endpoint.url``, the URL rebuilt from those parts,
never to the text they were given. Standard library only; the generated script carries it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..exceptions import ScriptError

#: The longest URL accepted.
MAX_LENGTH = 2048
_SHAPE = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<authority>[^/]*)(?P<path>/.*)?$", re.S)
_AUTHORITY = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:-]*)*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class EndpointError(ScriptError, ValueError):
    """The URL is not one this package connects to; the message says which part is wrong."""


@dataclass(frozen=True)
class Endpoint:
    """A checked KFP API URL: lower-case scheme and host, an optional port, a plain path without a final slash."""

    scheme: str
    host: str
    port: int | None
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)`` with the scheme's default port filled in."""
        return self.scheme, self.host, self.port or _DEFAULT_PORTS[self.scheme]

    @property
    def url(self) -> str:
        """The URL rebuilt from the checked parts: the one to connect to."""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.host}{port}{self.path}"


def parse(text: object, default_scheme: str | None = "https") -> Endpoint:
    """The ``Endpoint`` of ``text``; ``EndpointError`` naming the fault for anything else.

    Without a scheme, ``default_scheme`` is assumed (kfp.Client assumes https); with
    ``default_scheme=None`` the scheme is required.
    """
    if not isinstance(text, str) or not text:
        raise EndpointError("the URL is empty")
    if len(text) > MAX_LENGTH:
        raise EndpointError(f"the URL is longer than {MAX_LENGTH} characters")
    if any(not "\x21" <= c <= "\x7e" for c in text):
        raise EndpointError("the URL contains whitespace, a control character or a non-ASCII character")
    for character, what in (("\\", "a backslash"), ("@", "user info ('@')"), ("%", "percent-encoding"),
                            ("?", "a query"), ("#", "a fragment")):
        if character in text:
            raise EndpointError(f"the URL contains {what}; give scheme://HOST[:PORT][/PATH] only")
    shape = _SHAPE.match(text)
    if shape is None:
        raise EndpointError("the URL is not scheme://HOST[:PORT][/PATH]")
    scheme = (shape["scheme"] or default_scheme or "").lower()
    if not shape["scheme"] and default_scheme is None:
        raise EndpointError("the URL has no scheme; give http://HOST or https://HOST")
    if scheme not in _DEFAULT_PORTS:
        raise EndpointError(f"the URL's scheme is {scheme!r}; only http and https are supported")
    authority = _AUTHORITY.match(shape["authority"])
    if authority is None:
        raise EndpointError("the URL's host is not a DNS name, an IPv4 address or a bracketed IPv6 address")
    port = authority["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise EndpointError(f"the URL's port {port} is not between 1 and 65535")
    path = shape["path"] or ""
    if not _PATH.match(path):
        raise EndpointError("the URL's path has a character outside letters, digits and -._~!$&'()*+,;=:")
    return Endpoint(scheme, _host(authority["host"]), int(port) if port is not None else None, path.rstrip("/"))


def _host(host: str) -> str:
    """The host in its one canonical form, or ``EndpointError``."""
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise EndpointError("the URL's bracketed host is not an IPv6 address") from None
        return f"[{address.compressed}]"
    host = host.lower()
    if host.endswith("."):
        raise EndpointError("the URL's host ends with a dot; give the name without it")
    labels = host.split(".")
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]*", labels[-1]):  # only a dotted IPv4 address is numeric
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise EndpointError("the URL's host is numeric but not a dotted IPv4 address (a.b.c.d)") from None
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise EndpointError("the URL's host is not a valid DNS name")
    return host
