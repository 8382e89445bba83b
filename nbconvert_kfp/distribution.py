"""Distribution: the step runtime as a wheel (``runtime = package``) and an image build context
(``runtime = image``), for teams that install into their step images instead of shipping the
runtime with every pipeline.

``python -m nbconvert_kfp.distribution wheel DIR`` writes ``nbconvert_kfp_runtime-<version>-py3-none-any.whl``
(the ``nbconvert-kfp-runtime`` distribution: ``nbconvert_kfp.runtime`` and ``nbconvert_kfp.marshal``,
standard library only) for a package index the steps install from.

``python -m nbconvert_kfp.distribution image DIR [REQUIREMENT ...]`` writes a build context: that
wheel, a ``requirements.txt`` (kfp and the requirements given, e.g. the notebook's pins) and a
``Dockerfile`` that installs them on ``--base-image``. A pipeline converted with
``--KFPExporter.runtime=image --KFPExporter.base_image=<the built image>`` then needs nothing
installed when its steps start (add ``--KFPExporter.install_packages=False`` and
``--KFPExporter.install_kfp_package=False``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path
from typing import Mapping

from . import __version__, runtime

#: The distribution that carries the step runtime.
RUNTIME_DISTRIBUTION = "nbconvert-kfp-runtime"
_DATE = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest},{len(data)}"


def write_wheel(name: str, version: str, files: Mapping[str, str | bytes], directory: Path | str,
                summary: str = "", requires_python: str | None = None) -> Path:
    """Write a pure-Python wheel of ``files`` (``{path in site-packages: content}``); return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{re.sub(r'[^A-Za-z0-9.]+', '_', name)}-{version}"
    info = f"{stem}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += f"Summary: {summary}\n" if summary else ""
    metadata += f"Requires-Python: {requires_python}\n" if requires_python else ""
    contents: dict[str, bytes] = {path: (text.encode("utf-8") if isinstance(text, str) else text)
                                  for path, text in files.items()}
    contents[f"{info}/METADATA"] = metadata.encode("utf-8")
    contents[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: nbconvert-kfp\nRoot-Is-Purelib: true\n"
                                 b"Tag: py3-none-any\n")
    record = "".join(f"{path},{_record_hash(data)}\n" for path, data in sorted(contents.items()))
    contents[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode("utf-8")
    path = directory / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for member, data in sorted(contents.items()):
            entry = zipfile.ZipInfo(member, date_time=_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            wheel.writestr(entry, data)
    return path


def runtime_wheel(directory: Path | str) -> Path:
    """The ``nbconvert-kfp-runtime`` wheel of this version, written to ``directory``."""
    files = {path: text for path, text in runtime.sources().items() if path != "nbconvert_kfp/__init__.py"}
    # A namespace package: installed beside the full nbconvert-kfp, it adds no file of its own there.
    return write_wheel(RUNTIME_DISTRIBUTION, __version__, files, directory,
                       summary="The step runtime of nbconvert-kfp pipelines (standard library only)",
                       requires_python=">=3.9")


def dockerfile(base_image: str, wheel: str) -> str:
    """A Dockerfile that installs the runtime wheel and ``requirements.txt`` on ``base_image``."""
    return (f"# The step image of nbconvert-kfp pipelines converted with --KFPExporter.runtime=image.\n"
            f"FROM {base_image}\n"
            f"COPY {wheel} requirements.txt /tmp/nbconvert-kfp/\n"
            f"RUN python3 -m pip install --no-cache-dir /tmp/nbconvert-kfp/{wheel} "
            f"-r /tmp/nbconvert-kfp/requirements.txt && rm -rf /tmp/nbconvert-kfp\n")


def image_context(directory: Path | str, base_image: str, requirements: list[str]) -> Path:
    """Write an image build context (Dockerfile, runtime wheel, requirements.txt); return the Dockerfile."""
    from importlib import metadata

    directory = Path(directory)
    wheel = runtime_wheel(directory)
    pins = [f"kfp=={metadata.version('kfp')}", *requirements]
    (directory / "requirements.txt").write_text("".join(f"{line}\n" for line in dict.fromkeys(pins)), encoding="utf-8")
    path = directory / "Dockerfile"
    path.write_text(dockerfile(base_image, wheel.name), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m nbconvert_kfp.distribution wheel DIR`` or ``image DIR [REQUIREMENT ...]``."""
    parser = argparse.ArgumentParser(prog="python -m nbconvert_kfp.distribution",
                                     description="Build the nbconvert-kfp step runtime as a wheel or an image context.")
    commands = parser.add_subparsers(dest="command", required=True)
    wheel = commands.add_parser("wheel", help="write the nbconvert-kfp-runtime wheel to DIR")
    wheel.add_argument("directory", type=Path)
    image = commands.add_parser("image", help="write an image build context (Dockerfile, wheel, requirements) to DIR")
    image.add_argument("directory", type=Path)
    image.add_argument("requirements", nargs="*", help="requirements the image installs besides kfp")
    image.add_argument("--base-image", default=f"python:{sys.version_info.major}.{sys.version_info.minor}",
                       help="the image to build on (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "wheel":
        print(f"Wrote {runtime_wheel(args.directory)}")
    else:
        print(f"Wrote {image_context(args.directory, args.base_image, args.requirements)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
