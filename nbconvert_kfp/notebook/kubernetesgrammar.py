"""Kubernetes grammar: the rules the API server applies to names, label values and quantities.

Each check returns None when the text is valid, else the reason, so that the caller words the
one-line error with the cell and tag at fault. The rules are Kubernetes' own (apimachinery's
``validation`` package): a value accepted here is accepted by the cluster.
"""

from __future__ import annotations

import re

#: Longest DNS subdomain (secret, claim names; label key prefixes).
SUBDOMAIN_MAX = 253
#: Longest DNS label, label value and name part of a qualified name.
LABEL_MAX = 63
#: Longest secret key.
SECRET_KEY_MAX = 253

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_QUANTITY = re.compile(r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")


def subdomain_problem(text: str) -> str | None:
    """Why ``text`` is not an RFC 1123 subdomain (a Secret's or a PVC's name), or None."""
    if len(text) > SUBDOMAIN_MAX:
        return f"is longer than {SUBDOMAIN_MAX} characters"
    if not _SUBDOMAIN.match(text):
        return "must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    return None


def qualified_name_problem(text: str) -> str | None:
    """Why ``text`` is not a qualified name (a label, annotation or node selector key), or None."""
    prefix, slash, name = text.rpartition("/")
    if slash:
        if not prefix:
            return "has an empty prefix before '/'"
        problem = subdomain_problem(prefix)
        if problem:
            return f"has a prefix {prefix!r} that is not a DNS subdomain: it {problem}"
    if not name:
        return "has an empty name"
    if len(name) > LABEL_MAX:
        return f"has a name part longer than {LABEL_MAX} characters"
    if not _QUALIFIED_NAME.match(name):
        return ("must be letters, digits, '-', '_' and '.' (after an optional 'domain/' prefix), starting and "
                "ending with a letter or digit")
    return None


def label_value_problem(text: str) -> str | None:
    """Why ``text`` is not a label (or node selector) value, or None."""
    if len(text) > LABEL_MAX:
        return f"is longer than {LABEL_MAX} characters"
    if not _LABEL_VALUE.match(text):
        return "must be empty, or letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    return None


def secret_key_problem(text: str) -> str | None:
    """Why ``text`` is not a key of a Secret's data, or None."""
    if len(text) > SECRET_KEY_MAX:
        return f"is longer than {SECRET_KEY_MAX} characters"
    if text in (".", "..") or not _SECRET_KEY.match(text):
        return "must be letters, digits, '-', '_' and '.' (and not '.' or '..')"
    return None


def quantity_problem(text: str) -> str | None:
    """Why ``text`` is not a positive Kubernetes quantity (``5Gi``, ``500M``, ``1.5Ti``), or None."""
    match = _QUANTITY.match(text)
    if not match:
        return "is not a Kubernetes quantity such as 5Gi, 500Mi or 1Ti"
    if float(match.group(1)) == 0:
        return "is zero"
    return None
