"""Task options: step options and volumes rendered as KFP / kfp-kubernetes calls on a task."""

from __future__ import annotations

from typing import Any

from .pyliteral import python_literal as lit

#: Option kinds that kfp-kubernetes applies (and kfp.local ignores).
KUBERNETES_KINDS = frozenset({"timeout", "secret", "label", "annotation", "node_selector", "toleration"})
#: Options that set one key/value pair on the pod, and the kfp-kubernetes call for each.
_KEY_VALUE_CALLS = {"label": "add_pod_label", "annotation": "add_pod_annotation",
                    "node_selector": "add_node_selector"}


def effective_options(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the last option for each setting (a step's tags come after the notebook defaults)."""
    chosen: dict[tuple, dict[str, Any]] = {}
    for option in options:
        kind = option["kind"]
        key: tuple = (kind,)
        if kind in ("limit", "request"):
            accelerator = option["resource"] not in ("cpu", "memory")
            key = (kind, "accelerator" if accelerator else option["resource"])
        elif kind in ("env", "secret"):
            key = ("env", option.get("name") or option.get("env"))
        elif kind in ("label", "annotation", "node_selector", "toleration"):
            key = (kind, option["key"])
        elif kind == "package":
            key = (kind, option["requirement"])
        chosen.pop(key, None)
        chosen[key] = option
    return list(chosen.values())


def _call(option: dict[str, Any], task: str) -> str | None:
    kind = option["kind"]
    if kind in ("limit", "request"):
        resource, amount = option["resource"], option["amount"]
        if resource in ("cpu", "memory"):
            return f"{task}.set_{resource}_{kind}({lit(amount)})"
        return f"{task}.set_accelerator_type({lit(resource)}).set_accelerator_limit({int(amount)})"
    if kind == "cache":
        return f"{task}.set_caching_options(enable_caching={option['enabled']})"
    if kind == "retry":
        arguments = [f"num_retries={option['count']}"]
        for name, key in (("backoff_duration", "backoff"), ("backoff_factor", "factor"),
                          ("backoff_max_duration", "max_backoff")):
            if key in option:
                arguments.append(f"{name}={lit(option[key])}")
        return f"{task}.set_retry({', '.join(arguments)})"
    if kind == "timeout":
        return f"kubernetes.set_timeout({task}, {option['seconds']})"
    if kind == "env":
        return f"{task}.set_env_variable({lit(option['name'])}, {lit(option['value'])})"
    if kind == "secret":
        return (f"kubernetes.use_secret_as_env({task}, secret_name={lit(option['secret'])}, "
                f"secret_key_to_env={{{lit(option['key'])}: {lit(option['env'])}}})")
    if kind in _KEY_VALUE_CALLS:
        return f"kubernetes.{_KEY_VALUE_CALLS[kind]}({task}, {lit(option['key'])}, {lit(option['value'])})"
    if kind == "toleration":
        fields = [f"{name}={lit(option[name])}" for name in ("key", "operator", "value", "effect")
                  if option[name] is not None]
        return f"kubernetes.add_toleration({task}, {', '.join(fields)})"
    return None  # image, package and report shape the component, not the task


def describe(option: dict[str, Any]) -> str:
    """Say what an option sets, for the list a local run prints of what it ignores."""
    kind = option["kind"]
    if kind in ("limit", "request"):
        return f"{option['resource']} {kind} {option['amount']}"
    if kind == "timeout":
        return f"timeout {option['seconds']}s"
    if kind == "secret":
        return f"secret {option['secret']}/{option['key']} as ${option['env']}"
    if kind == "toleration":
        return f"toleration {option['key']}"
    if kind == "node_selector":
        return f"node selector {option['key']}={option['value']}"
    return f"{kind} {option['key']}={option['value']}"


def task_calls(options: list[dict[str, Any]], task: str, caching: bool | None) -> list[str]:
    """The calls that apply a step's options to its task; ``caching`` is the pipeline default."""
    calls = [call for option in options if (call := _call(option, task))]
    if caching is not None and not any(o["kind"] == "cache" for o in options):
        calls.append(f"{task}.set_caching_options(enable_caching={caching})")
    return calls


def volume_calls(volume: dict[str, Any], task: str, claim: str, created: str | None = None) -> list[str]:
    """Mount a volume into a task (``claim`` is the PVC name expression) and expose its path.

    ``created`` names the variable of a PVC the pipeline creates; a local run does not
    create it, so the mount is guarded.
    """
    mount = f"kubernetes.mount_pvc({task}, pvc_name={claim}, mount_path={lit(volume['mount_point'])})"
    calls = [f"if {created} is not None:\n        {mount}" if created else mount]
    if volume["env"]:
        calls.append(f"{task}.set_env_variable({lit(volume['env'])}, {lit(volume['mount_point'])})")
    return calls


def create_volume(volume: dict[str, Any], variable: str) -> str:
    """Create a per-run PVC for a ``new_pvc`` volume."""
    arguments = [f"pvc_name_suffix={lit('-' + volume['name'])}",
                 f"access_modes={lit(volume['access_modes'])}", f"size={lit(volume['size'])}"]
    if volume["storage_class"]:
        arguments.append(f"storage_class_name={lit(volume['storage_class'])}")
    if volume["annotations"]:
        arguments.append(f"annotations={lit(volume['annotations'])}")
    # kfp.local cannot run CreatePVC (a cluster-side component): a local run creates no volume.
    return f"{variable} = None if LOCAL_RUN else kubernetes.CreatePVC({', '.join(arguments)})"


def created_volume_calls(variable: str) -> list[str]:
    """A per-run PVC must be created on every run, never taken from KFP's cache."""
    return [f"if {variable} is not None:\n        {variable}.set_caching_options(enable_caching=False)"]
