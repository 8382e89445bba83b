"""Step options: the tags that set a step's resources, image, retries, caching, environment and pod, and
the variables it gives as outputs of the pipeline.

Every kind of option is one record of :data:`OPTION_KINDS`: its tag prefix, how its value
is read and checked, which earlier option it replaces, the KFP call that applies it to a
task, how it is described to the user, and what a local run (kfp.local) does with it.
Nothing else in the package switches on an option's kind.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from typing import Callable

from ..analysis import pipargument
from ..codegen.literal import python_literal as lit
from ..errors import TagError
from . import kubernetesgrammar as grammar
from ..model import StepOption

#: What a local run does with an option.
APPLIED = "applied"  # kfp.local applies it (env, retry, caching)
IGNORED = "ignored"  # applies on a KFP cluster only; a local run lists it once
COMPONENT = "component"  # shapes the component (image, packages, report), not the task

_CPU = re.compile(r"^([0-9]*\.)?[0-9]+m?$")
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_COUNT = re.compile(r"^[1-9][0-9]*$")
_DURATION = re.compile(r"^([0-9]+)(s|m|h|d)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESOURCE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration a tag may give, in seconds (Kubernetes and Argo keep some durations in int32).
MAX_SECONDS = 2 ** 31 - 1
_SWITCH = {"enabled": True, "true": True, "on": True, "disabled": False, "false": False, "off": False}


def _fail(text: str, cell: int | None, why: str) -> TagError:
    return TagError(f"tag {text!r}: {why}", cell, text)


def seconds(text: str) -> int | None:
    """Parse a duration such as ``90``, ``30s``, ``5m``, ``2h``, ``1d`` into seconds."""
    match = _DURATION.match(text)
    if not match:
        return None
    value = int(match.group(1)) * _SECONDS[match.group(2) or "s"]
    return value if value <= MAX_SECONDS else None


def _pair(text: str, value: str, cell: int | None, what: str) -> tuple[str, str]:
    key, sep, rest = value.partition(":")
    if not sep or not key:
        raise _fail(text, cell, f"expected {what}")
    return key, rest


# --- readers: (kind, value after the prefix, the whole tag, cell) -> option -------------------------


def _read_resource(kind: str, value: str, text: str, cell: int | None) -> StepOption:
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


def _read_image(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    if not value or any(ch.isspace() for ch in value):
        raise _fail(text, cell, "expected image:<image reference>, e.g. image:python:3.12")
    return {"kind": kind, "image": value}


def _read_switch(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    if value.lower() not in _SWITCH:
        raise _fail(text, cell, f"expected {kind}:enabled or {kind}:disabled")
    return {"kind": kind, "enabled": _SWITCH[value.lower()]}


def _read_retry(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    parts = value.split(":")
    if not parts[0].isdigit() or len(parts) > 4 or int(parts[0]) > MAX_SECONDS:
        raise _fail(text, cell, "expected retry:<count>[:<backoff>[:<factor>[:<max backoff>]]], e.g. retry:3:30s:2")
    option: StepOption = {"kind": kind, "count": int(parts[0])}
    if len(parts) > 1:
        if seconds(parts[1]) is None:
            raise _fail(text, cell, f"{parts[1]!r} is not a duration such as 30s, 5m or 1h (at most "
                                    f"{MAX_SECONDS}s)")
        option["backoff"] = f"{seconds(parts[1])}s"
    if len(parts) > 2:
        try:
            option["factor"] = float(parts[2])
        except ValueError:
            raise _fail(text, cell, f"{parts[2]!r} is not a backoff factor such as 2") from None
        if not math.isfinite(option["factor"]) or option["factor"] <= 0:
            raise _fail(text, cell, f"{parts[2]!r} is not a backoff factor such as 2 (a finite number above 0)")
    if len(parts) > 3:
        if seconds(parts[3]) is None:
            raise _fail(text, cell, f"{parts[3]!r} is not a duration such as 30s, 5m or 1h (at most "
                                    f"{MAX_SECONDS}s)")
        option["max_backoff"] = f"{seconds(parts[3])}s"
    return option


def _read_timeout(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    if not seconds(value):
        raise _fail(text, cell, f"{value!r} is not a duration such as 600, 30m or 2h (above 0, at most "
                                f"{MAX_SECONDS}s)")
    return {"kind": kind, "seconds": seconds(value)}


def _read_env(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    name, env_value = _pair(text, value, cell, "env:<NAME>:<value>")
    if not _ENV_NAME.match(name):
        raise _fail(text, cell, f"{name!r} is not an environment variable name")
    return {"kind": kind, "name": name, "value": env_value}


def _read_secret(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    parts = value.split(":")
    if len(parts) != 3 or not all(parts) or not _ENV_NAME.match(parts[2]):
        raise _fail(text, cell, "expected secret:<secret name>:<key>:<ENV_NAME>")
    problem = grammar.subdomain_problem(parts[0])
    if problem:
        raise _fail(text, cell, f"the secret name {parts[0]!r} {problem}")
    problem = grammar.secret_key_problem(parts[1])
    if problem:
        raise _fail(text, cell, f"the secret key {parts[1]!r} {problem}")
    return {"kind": kind, "secret": parts[0], "key": parts[1], "env": parts[2]}


def _read_key_value(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    prefix = kind.replace("_", "-")
    key, item = _pair(text, value, cell, f"{prefix}:<key>:<value>")
    what = kind.replace("_", " ")
    problem = grammar.qualified_name_problem(key)
    if problem:
        raise _fail(text, cell, f"{key!r} is not a valid Kubernetes {what} key: it {problem}")
    if kind != "annotation":
        problem = grammar.label_value_problem(item)
        if problem:
            raise _fail(text, cell, f"{item!r} is not a valid Kubernetes {what} value: it {problem}")
    return {"kind": kind, "key": key, "value": item}


def _read_toleration(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    # kubectl's taint syntax: key[=value]:Effect, or key alone (tolerate every effect)
    target, _, effect = value.rpartition(":") if value.endswith(_EFFECTS) else (value, "", "")
    key, equals, taint_value = target.partition("=")
    if (not key or grammar.qualified_name_problem(key) or (effect and effect not in _EFFECTS)
            or (equals and grammar.label_value_problem(taint_value))):
        raise _fail(text, cell, "expected toleration:<key>[=<value>][:<effect>], e.g. "
                                "toleration:nvidia.com/gpu=present:NoSchedule")
    return {"kind": kind, "key": key, "operator": "Equal" if equals else "Exists",
            "value": taint_value if equals else None, "effect": effect or None}


def _read_output(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    if cell is None:
        raise _fail(text, cell, "marks a variable of one step as a pipeline output: tag a cell of that step, "
                                "not every step")
    if not value.isidentifier() or keyword.iskeyword(value):
        raise _fail(text, cell, f"{value!r} is not a variable name (expected output:<variable>, e.g. output:model)")
    return {"kind": kind, "variable": value, "cell": cell}


def _read_package(kind: str, value: str, text: str, cell: int | None) -> StepOption:
    try:
        return {"kind": kind, "requirement": pipargument.requirement(value)}
    except ValueError as error:
        raise _fail(text, cell, str(error)) from None


# --- KFP calls: (option, task variable) -> a statement of the pipeline function ------------------


def _resource_call(option: StepOption, task: str) -> str:
    resource, amount, kind = option["resource"], option["amount"], option["kind"]
    if resource in ("cpu", "memory"):
        return f"{task}.set_{resource}_{kind}({lit(amount)})"
    return f"{task}.set_accelerator_type({lit(resource)}).set_accelerator_limit({int(amount)})"


def _retry_call(option: StepOption, task: str) -> str:
    arguments = [f"num_retries={option['count']}"]
    for name, key in (("backoff_duration", "backoff"), ("backoff_factor", "factor"),
                      ("backoff_max_duration", "max_backoff")):
        if key in option:
            arguments.append(f"{name}={lit(option[key])}")  # type: ignore[literal-required]
    return f"{task}.set_retry({', '.join(arguments)})"


def _pod_call(function: str) -> Callable[[StepOption, str], str]:
    def call(option: StepOption, task: str) -> str:
        return f"kubernetes.{function}({task}, {lit(option['key'])}, {lit(option['value'])})"

    return call


def _toleration_call(option: StepOption, task: str) -> str:
    fields = [f"{name}={lit(option[name])}" for name in ("key", "operator", "value", "effect")  # type: ignore[literal-required]
              if option.get(name) is not None]
    return f"kubernetes.add_toleration({task}, {', '.join(fields)})"


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionKind:
    """One kind of step option, everything about it in one place."""

    #: the option's name, its ``kind`` in the model
    name: str
    #: the tag prefix (``limit:``); the rest of the tag is the value
    prefix: str
    #: (kind, value, tag, cell) -> the parsed option; raises ``TagError`` naming the cell and tag
    read: Callable[[str, str, str, int | None], StepOption]
    #: the setting an option sets: a later option with the same key replaces an earlier one
    key: Callable[[StepOption], tuple]
    #: (option, task variable) -> the statement that applies it to a KFP task; None when the
    #: option shapes the component instead (image, packages, report)
    call: Callable[[StepOption, str], str] | None
    #: how the option is named to a user ("memory limit 4Gi")
    describe: Callable[[StepOption], str]
    #: what a local run does with it: APPLIED, IGNORED or COMPONENT
    local: str
    #: an example tag, for errors and documentation
    example: str


def _by_kind(option: StepOption) -> tuple:
    return (option["kind"],)


def _by_resource(option: StepOption) -> tuple:
    accelerator = option["resource"] not in ("cpu", "memory")
    return (option["kind"], "accelerator" if accelerator else option["resource"])


def _by_env_name(option: StepOption) -> tuple:
    # env: and secret: set the same thing, an environment variable of the step
    return ("env", option.get("name") or option.get("env"))


def _by_key(option: StepOption) -> tuple:
    return (option["kind"], option["key"])


OPTION_KINDS: tuple[OptionKind, ...] = (
    OptionKind("limit", "limit:", _read_resource, _by_resource, _resource_call,
               lambda o: f"{o['resource']} limit {o['amount']}", IGNORED, "limit:memory:4Gi"),
    OptionKind("request", "request:", _read_resource, _by_resource, _resource_call,
               lambda o: f"{o['resource']} request {o['amount']}", IGNORED, "request:cpu:2"),
    OptionKind("image", "image:", _read_image, _by_kind, None,
               lambda o: f"image {o['image']}", IGNORED, "image:python:3.12-slim"),
    OptionKind("cache", "cache:", _read_switch, _by_kind,
               lambda o, task: f"{task}.set_caching_options(enable_caching={o['enabled']})",
               lambda o: f"caching {'on' if o['enabled'] else 'off'}", APPLIED, "cache:disabled"),
    OptionKind("retry", "retry:", _read_retry, _by_kind, _retry_call,
               lambda o: f"{o['count']} retries", APPLIED, "retry:3:30s:2"),
    OptionKind("timeout", "timeout:", _read_timeout, _by_kind,
               lambda o, task: f"kubernetes.set_timeout({task}, {o['seconds']})",
               lambda o: f"timeout {o['seconds']}s", IGNORED, "timeout:2h"),
    OptionKind("env", "env:", _read_env, _by_env_name,
               lambda o, task: f"{task}.set_env_variable({lit(o['name'])}, {lit(o['value'])})",
               lambda o: f"env {o['name']}", APPLIED, "env:MODE:fast"),
    OptionKind("secret", "secret:", _read_secret, _by_env_name,
               lambda o, task: (f"kubernetes.use_secret_as_env({task}, secret_name={lit(o['secret'])}, "
                                f"secret_key_to_env={{{lit(o['key'])}: {lit(o['env'])}}})"),
               lambda o: f"secret {o['secret']}/{o['key']} as ${o['env']}", IGNORED,
               "secret:db-creds:password:DB_PASS"),
    OptionKind("label", "label:", _read_key_value, _by_key, _pod_call("add_pod_label"),
               lambda o: f"label {o['key']}={o['value']}", IGNORED, "label:team:ml"),
    OptionKind("annotation", "annotation:", _read_key_value, _by_key, _pod_call("add_pod_annotation"),
               lambda o: f"annotation {o['key']}={o['value']}", IGNORED, "annotation:owner:alice"),
    OptionKind("node_selector", "node-selector:", _read_key_value, _by_key, _pod_call("add_node_selector"),
               lambda o: f"node selector {o['key']}={o['value']}", IGNORED,
               "node-selector:cloud.google.com/gke-nodepool:gpu-pool"),
    OptionKind("toleration", "toleration:", _read_toleration, _by_key, _toleration_call,
               lambda o: f"toleration {o['key']}", IGNORED, "toleration:nvidia.com/gpu=present:NoSchedule"),
    OptionKind("package", "package:", _read_package, lambda o: ("package", o["requirement"]), None,
               lambda o: f"package {o['requirement']}", COMPONENT, "package:xgboost==2.1.0"),
    OptionKind("report", "report:", _read_switch, _by_kind, None,
               lambda o: f"report {'on' if o['enabled'] else 'off'}", COMPONENT, "report:disabled"),
    OptionKind("output", "output:", _read_output, lambda o: ("output", o["variable"]), None,
               lambda o: f"pipeline output {o['variable']}", COMPONENT, "output:model"),
)

#: Option kind by name.
KINDS: dict[str, OptionKind] = {kind.name: kind for kind in OPTION_KINDS}
#: Tag prefixes of every step option.
PREFIXES: tuple[str, ...] = tuple(kind.prefix for kind in OPTION_KINDS)


def parse_step_option(text: str, cell: int | None) -> StepOption:
    """Parse and validate one step option tag; ``cell`` is None for notebook-wide defaults."""
    stripped = text.strip()
    kind = next(k for k in OPTION_KINDS if stripped.startswith(k.prefix))
    return kind.read(kind.name, stripped[len(kind.prefix):], text, cell)


def effective_options(options: list[StepOption]) -> list[StepOption]:
    """Keep the last option for each setting (a step's tags come after the notebook defaults)."""
    chosen: dict[tuple, StepOption] = {}
    for option in options:
        key = KINDS[option["kind"]].key(option)
        chosen.pop(key, None)
        chosen[key] = option
    return list(chosen.values())


def task_calls(options: list[StepOption], task: str, caching: bool | None) -> list[str]:
    """The statements that apply a step's options to its task; ``caching`` is the pipeline default."""
    calls = [kind.call(option, task) for option in options
             if (kind := KINDS[option["kind"]]).call is not None]
    if caching is not None and not any(o["kind"] == "cache" for o in options):
        calls.append(KINDS["cache"].call({"kind": "cache", "enabled": caching}, task))  # type: ignore[misc]
    return calls


def describe(option: StepOption) -> str:
    """Say what an option sets, as a local run lists what it does not apply."""
    return KINDS[option["kind"]].describe(option)


def ignored_locally(options: list[StepOption]) -> list[StepOption]:
    """The options a local run (kfp.local) does not apply."""
    return [option for option in options if KINDS[option["kind"]].local == IGNORED]


def last_value(options: list[StepOption], kind: str, field: str):
    """The ``field`` of the last option of ``kind``, or None."""
    values = [option[field] for option in options if option["kind"] == kind]  # type: ignore[literal-required]
    return values[-1] if values else None
