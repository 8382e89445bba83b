"""Pip arguments: package requirements, index URLs and trusted hosts that a step hands to pip.

kfp joins them into the ``sh -c`` command that starts every step: a requirement as
Python's ``repr`` of it (single quotes, or double quotes when it holds a single
quote), index URLs and trusted hosts unquoted. Each check here lets through only text
that stays one shell word there, so a value can never add a command.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement

#: An http(s) or file index URL, of characters the shell reads literally in an unquoted word.
_URL = re.compile(r"^(https?://[A-Za-z0-9._~%+,=@:/-]+|file:///[A-Za-z0-9._~%+,=@:/-]*)$")
#: A trusted host: a host name or address, and a port.
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
#: Characters a requirement may not hold once written in single quotes (no escaping there).
_UNQUOTABLE = re.compile(r"['\\\x00-\x1f\x7f-\x9f]")
#: Characters of a direct URL reference (``name @ URL``) that mean something to a shell or to pip's parser.
_URL_SPECIAL = re.compile(r"[\s'\"`$\\;&|<>(){}*?!#^]")


def requirement(value: str) -> str:
    """A PEP 508 requirement as pip gets it: markers written with double quotes.

    Raises ``ValueError`` saying why for anything else: an option (``--index-url``), a
    requirement with a shell metacharacter, a URL reference that is not a plain http(s) URL.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a pip requirement such as xgboost==2.1.0")
    try:
        parsed = Requirement(value)
    except InvalidRequirement:
        raise ValueError(f"{value!r} is not a pip requirement (PEP 508) such as xgboost==2.1.0") from None
    if parsed.url is not None and (_URL_SPECIAL.search(parsed.url) or urlsplit(parsed.url).scheme
                                   not in ("http", "https", "git+https")):
        raise ValueError(f"{value!r}: a requirement's URL must be a plain https URL without quotes, spaces "
                         "or shell characters")
    text = value.strip() if "'" not in value else str(parsed)
    if _UNQUOTABLE.search(text) or "$(" in text or "`" in text:
        raise ValueError(f"{value!r} holds characters a pip requirement has no use for (quotes, backslashes, "
                         "`, $( or control characters)")
    return text


def index_url(value: str) -> str:
    """An http(s) (or local file://) package index URL with no character a shell would read; else ``ValueError``."""
    if not isinstance(value, str) or not _URL.match(value) or not (value.startswith("file:")
                                                                   or urlsplit(value).hostname):
        raise ValueError(f"{value!r} is not an http(s) package index URL such as https://pypi.org/simple "
                         "(letters, digits and . _ ~ % + , = @ : / - only)")
    return value


def trusted_host(value: str) -> str:
    """A host name (or address) with an optional port, as pip's ``--trusted-host`` takes; else ``ValueError``."""
    if not isinstance(value, str) or not _HOST.match(value):
        raise ValueError(f"{value!r} is not a host name such as pypi.example.com or pypi.example.com:8080")
    return value
