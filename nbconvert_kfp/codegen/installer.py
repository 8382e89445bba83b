"""Installer: the shell lines with which a step installs its packages when it starts on a cluster.

kfp's own ``packages_to_install`` runs ``python3 -m pip install`` in every step; a cold pip takes
18-45 s for a few pins where uv takes about 4 s (and pip installs uv in about 2 s). A generated
script therefore compiles its components with ``install_kfp_package=False`` and no packages, and its
``installs(...)`` decorator puts these lines in front of kfp's own ``sh -ec`` program:

- ``install REQUIREMENT...`` runs ``python3 -m uv pip install --python python3``, and pip when uv
  fails (a read-only site-packages, a requirement uv refuses); both leave alone what the image
  already has at the pinned version;
- uv comes from the image when it has it, else pip installs it; when pip cannot (an index without
  uv), every install is pip's;
- the index URLs and trusted hosts reach both installers (pip: ``--trusted-host``; uv:
  ``--allow-insecure-host``, and pip's way of choosing among several indexes);
- ``python3`` is the only interpreter named, so kfp.local's ``SubprocessRunner(use_venv=True)``,
  which swaps it for its venv's Python, installs into that venv.

Every step's command carries these lines, and a KFP backend copies the command into its Argo Workflow
for every step that runs: they are kept short. Values reach the shell quoted by ``shlex.quote``, after
:mod:`nbconvert_kfp.analysis.pipargument` checked them.
"""

from __future__ import annotations

import re
import shlex
from typing import Iterable

from packaging.requirements import InvalidRequirement, Requirement

from .literal import python_literal

#: The generated script's decorator that gives a component its install lines (see :func:`script_function`).
DECORATOR = "installs"


def installer_lines(index_urls: list[str], trusted_hosts: list[str]) -> list[str]:
    """The lines that define ``install`` for a step's shell, with the pipeline's package indexes."""
    indexes = [word for number, url in enumerate(index_urls)
               for word in ("--index-url" if number == 0 else "--extra-index-url", url)]
    pip = indexes + [word for host in trusted_hosts for word in ("--trusted-host", host)]
    uv = indexes + [word for host in trusted_hosts for word in ("--allow-insecure-host", host)]
    if len(index_urls) > 1:  # uv takes a package from the first index that has it; pip from the best of all
        uv += ["--index-strategy", "unsafe-best-match"]
    return [
        f'pip_install() {{ {shlex.join(["python3", "-m", "pip", "install", "-q", *pip])} "$@"; }}',
        f'install() {{ {shlex.join(["python3", "-m", "uv", "pip", "install", "--python", "python3", *uv])} "$@"'
        ' || pip_install "$@"; }',
        "python3 -m uv -V || pip_install uv || :",
    ]


def pin_keys(requirements: Iterable[str]) -> dict[str, str]:
    """Requirement -> its key in the script's ``PINS``: the name of its distribution (``numpy==2.4.6`` ->
    ``numpy``); when several requirements name one distribution, the bare name keeps the name (else the
    first), each other one is its own key, as is a requirement with no name."""
    groups: dict[str | None, list[str]] = {}
    names: dict[str, str] = {}
    for text in dict.fromkeys(requirements):
        try:
            name = Requirement(text).name
        except InvalidRequirement:
            groups.setdefault(None, []).append(text)
            continue
        canonical = re.sub(r"[-_.]+", "-", name).lower()
        groups.setdefault(canonical, []).append(text)
        names.setdefault(text, name)
    keys = {text: text for text in groups.pop(None, [])}
    for group in groups.values():
        named = next((text for text in group if text == names[text]), group[0])
        keys.update({text: names[text] if text == named else text for text in group})
    return keys


def installer_constant(index_urls: list[str], trusted_hosts: list[str]) -> str:
    """The ``INSTALLER`` statement of a generated script: its shell lines, one string literal each."""
    lines = installer_lines(index_urls, trusted_hosts)
    return "INSTALLER = [\n" + "".join(f"    {python_literal(line)},\n" for line in lines) + "]"


def script_function() -> str:
    """The generated script's ``installs`` decorator (it reads ``PINS``, ``INSTALLER``, ``INSTALL_KFP`` and
    ``LOCAL_RUN``)."""
    return f'''def {DECORATOR}(*requirements):
    """Make a component install ``requirements`` (keys of PINS, or requirements) and kfp, without its
    dependencies, when its step starts on a cluster: INSTALLER's lines and an install line go in front of
    kfp's own program. A local run installs nothing."""
    requirements = [PINS.get(r, r) for r in requirements]
    lines = [shlex.join(["install", *requirements])] if requirements else []
    if INSTALL_KFP and not any(r.startswith("kfp") for r in requirements):
        lines.append(f"install --no-deps kfp=={{kfp.__version__}}")

    def add_install_lines(component):
        command = component.component_spec.implementation.container.command
        if lines and not LOCAL_RUN:
            if command[:2] != ["sh", "-ec"]:
                raise RuntimeError(f"{{component.name}}: kfp's command is not 'sh -ec PROGRAM'")
            # kfp's program (save the component's source, run it) without its padding: a KFP backend
            # copies every step's command into the run's Argo Workflow several times
            program = [" ".join(line.split()) for line in command[2].splitlines() if line.strip()]
            command[2] = "\\n".join([*INSTALLER, *lines, *program]) + "\\n"
        return component

    return add_install_lines'''
