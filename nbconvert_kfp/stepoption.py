"""Step options: tags that set a step's resources, image, retries, caching, environment and pod."""

from __future__ import annotations

import re
from typing import Any

from .errors import TagError

#: Tag prefix -> option kind. Kale 2.x spells limit:, label:, annotation:; the rest follow suit.
PREFIXES = {
    "limit:": "limit", "request:": "request", "image:": "image", "cache:": "cache",
    "retry:": "retry", "timeout:": "timeout", "env:": "env", "secret:": "secret",
    "label:": "label", "annotation:": "annotation", "node-selector:": "node_selector",
    "toleration:": "toleration", "package:": "package", "report:": "report",
}

_CPU = re.compile(r"^([0-9]*\.)?[0-9]+m?$")
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_COUNT = re.compile(r"^[1-9][0-9]*$")
_DURATION = re.compile(r"^([0-9]+)(s|m|h|d)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_RESOURCE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,.-]+\])?([<>=!~]=?[^\s;]+)?$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SWITCH = {"enabled": True, "true": True, "on": True, "disabled": False, "false": False, "off": False}


def _fail(text: str, cell: int | None, why: str) -> TagError:
    return TagError(f"tag {text!r}: {why}", cell, text)


def seconds(text: str) -> int | None:
    """Parse a duration such as ``90``, ``30s``, ``5m``, ``2h``, ``1d`` into seconds."""
    match = _DURATION.match(text)
    return int(match.group(1)) * _SECONDS[match.group(2) or "s"] if match else None


def _pair(text: str, value: str, cell: int | None, what: str) -> tuple[str, str]:
    key, sep, rest = value.partition(":")
    if not sep or not key:
        raise _fail(text, cell, f"expected {what}")
    return key, rest


def _resource(kind: str, text: str, value: str, cell: int | None) -> dict[str, Any]:
    resource, sep, amount = value.rpartition(":")
    if not sep or not resource:
        raise _fail(text, cell, f"expected {kind}:<resource>:<amount>, e.g. {kind}:memory:4Gi")
    if resource == "cpu":
        valid = bool(_CPU.match(amount))
        hint = "a number of cores such as 2, 0.5 or 500m"
    elif resource == "memory":
        valid = bool(_MEMORY.match(amount))
        hint = "an integer with an optional unit such as 512Mi, 4Gi or 1G"
    elif "/" in resource and _RESOURCE.match(resource):
        valid = bool(_COUNT.match(amount))
        hint = f"a whole number of {resource} devices"
        if kind == "request":
            raise _fail(text, cell, "accelerators take a limit only (use limit:<accelerator>:<count>)")
    else:
        raise _fail(text, cell, f"unknown resource {resource!r} (cpu, memory, or an accelerator "
                                "named by its vendor domain, such as nvidia.com/gpu or amd.com/gpu)")
    if not valid:
        raise _fail(text, cell, f"{amount!r} is not {hint}")
    return {"kind": kind, "resource": resource, "amount": amount}


def _retry(text: str, value: str, cell: int | None) -> dict[str, Any]:
    parts = value.split(":")
    if not parts[0].isdigit() or len(parts) > 4:
        raise _fail(text, cell, "expected retry:<count>[:<backoff>[:<factor>[:<max backoff>]]], e.g. retry:3:30s:2")
    option: dict[str, Any] = {"kind": "retry", "count": int(parts[0])}
    if len(parts) > 1:
        if seconds(parts[1]) is None:
            raise _fail(text, cell, f"{parts[1]!r} is not a duration such as 30s, 5m or 1h")
        option["backoff"] = f"{seconds(parts[1])}s"
    if len(parts) > 2:
        try:
            option["factor"] = float(parts[2])
        except ValueError:
            raise _fail(text, cell, f"{parts[2]!r} is not a backoff factor such as 2") from None
    if len(parts) > 3:
        if seconds(parts[3]) is None:
            raise _fail(text, cell, f"{parts[3]!r} is not a duration such as 30s, 5m or 1h")
        option["max_backoff"] = f"{seconds(parts[3])}s"
    return option


def _toleration(text: str, value: str, cell: int | None) -> dict[str, Any]:
    # kubectl's taint syntax: key[=value]:Effect, or key alone (tolerate every effect)
    target, _, effect = value.rpartition(":") if value.endswith(_EFFECTS) else (value, "", "")
    key, equals, taint_value = target.partition("=")
    if not key or not _LABEL_KEY.match(key) or (effect and effect not in _EFFECTS):
        raise _fail(text, cell, "expected toleration:<key>[=<value>][:<effect>], e.g. "
                                "toleration:nvidia.com/gpu=present:NoSchedule")
    return {"kind": "toleration", "key": key, "operator": "Equal" if equals else "Exists",
            "value": taint_value if equals else None, "effect": effect or None}


def parse_step_option(text: str, cell: int | None) -> dict[str, Any]:
    """Parse and validate one step option tag; ``cell`` is None for notebook-wide defaults."""
    stripped = text.strip()
    prefix = next(p for p in PREFIXES if stripped.startswith(p))
    kind, value = PREFIXES[prefix], stripped[len(prefix):]
    if kind in ("limit", "request"):
        return _resource(kind, text, value, cell)
    if kind == "image":
        if not value or any(ch.isspace() for ch in value):
            raise _fail(text, cell, "expected image:<image reference>, e.g. image:python:3.12")
        return {"kind": kind, "image": value}
    if kind in ("cache", "report"):
        if value.lower() not in _SWITCH:
            raise _fail(text, cell, f"expected {kind}:enabled or {kind}:disabled")
        return {"kind": kind, "enabled": _SWITCH[value.lower()]}
    if kind == "retry":
        return _retry(text, value, cell)
    if kind == "timeout":
        if not seconds(value):
            raise _fail(text, cell, f"{value!r} is not a duration such as 600, 30m or 2h")
        return {"kind": kind, "seconds": seconds(value)}
    if kind == "env":
        name, env_value = _pair(text, value, cell, "env:<NAME>:<value>")
        if not _ENV_NAME.match(name):
            raise _fail(text, cell, f"{name!r} is not an environment variable name")
        return {"kind": kind, "name": name, "value": env_value}
    if kind == "secret":
        parts = value.split(":")
        if len(parts) != 3 or not all(parts) or not _K8S_NAME.match(parts[0]) or not _ENV_NAME.match(parts[2]):
            raise _fail(text, cell, "expected secret:<secret name>:<key>:<ENV_NAME>")
        return {"kind": kind, "secret": parts[0], "key": parts[1], "env": parts[2]}
    if kind in ("label", "annotation", "node_selector"):
        key, item = _pair(text, value, cell, f"{prefix}<key>:<value>")
        if not _LABEL_KEY.match(key):
            raise _fail(text, cell, f"{key!r} is not a valid Kubernetes {kind.replace('_', ' ')} key")
        return {"kind": kind, "key": key, "value": item}
    if kind == "toleration":
        return _toleration(text, value, cell)
    if not _REQUIREMENT.match(value):
        raise _fail(text, cell, f"{value!r} is not a pip requirement such as xgboost==2.1.0")
    return {"kind": "package", "requirement": value}
