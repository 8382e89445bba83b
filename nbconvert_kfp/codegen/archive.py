"""Payloads: code the generated pipeline carries (the step runtime, the script tools, the notebook's
shared cells and modules) as one compact string literal, and the Python that unpacks it.

A payload is the files as JSON (``{path: text}``, keys sorted), compressed with xz (LZMA) and
written in base64: xz packs Python source about a third tighter than zip's deflate, and
base64 holds no character that JSON, and so the KFP and Argo documents a command is stored in,
must escape. The same files always give the same literal, so the commands that carry a payload,
and KFP's cache keys with them, change only when the code does.

The code that unpacks a payload writes its files into a zip archive that ``zipimport`` reads:
putting that archive first on ``sys.path`` makes its modules importable. The script tools' loader first
looks for nbconvert-kfp itself: where the version that wrote the script is installed, its own modules
serve and nothing is unpacked (found and its version read without importing it).

The step runtime is shipped *minified*: docstrings dropped and the code re-printed by
``ast.unparse``, which drops comments. The notebook's own cells are shipped as written, so
tracebacks show their lines.

Minifying and packing are remembered within a process, keyed by the text itself: nbconvert-kfp's own
code, the same in every conversion, is packed once, and a changed file is a new key, never a stale hit.
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
import lzma
import zlib
from typing import Mapping

#: Characters per line of a payload's literal: long, so that an encoded payload (nbconvert-kfp's own code, which
#: changes only with its version) is a short block of the script, and a reviewer's diff of it is a few lines.
LINE = 1000
_XZ_PRESET = 9
#: Payloads up to this many bytes of JSON are remembered (see the module's docstring); larger ones are packed anew.
_REMEMBER_UP_TO = 4 * 1024 * 1024


def payload(files: Mapping[str, str]) -> str:
    """The files as one base64 string: xz-compressed JSON, the same for the same files."""
    data = json.dumps(dict(files), sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _remembered_payload(data) if len(data) <= _REMEMBER_UP_TO else payload_bytes(data)


@functools.lru_cache(maxsize=16)
def _remembered_payload(data: bytes) -> str:
    """``payload_bytes``, remembered by the bytes themselves."""
    return payload_bytes(data)


def payload_bytes(data: bytes) -> str:
    """Bytes xz-compressed, in base64 (about a third of gzip's size for Python source)."""
    return base64.b64encode(lzma.compress(data, format=lzma.FORMAT_XZ, preset=_XZ_PRESET)).decode("ascii")


def unpack(text: str) -> dict[str, str]:
    """The files of a payload (what the generated code does, for tests and tools)."""
    return json.loads(lzma.decompress(base64.b64decode(text)).decode("utf-8"))


def payload_size_at_least(data: bytes) -> int:
    """A fast lower bound on ``len(payload_bytes(data))``: xz packs source at most about four times
    tighter than zlib's fastest level (the bound spares xz's time on data far too large to ship)."""
    return len(zlib.compress(data, 1)) // 4 * 4 // 3


def digest(text: str) -> str:
    """A short content hash of a payload."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def minified(source: str) -> str:
    """Python source without docstrings and comments (``ast.unparse``), for code users never read."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                if len(body) == 1:
                    body[0] = ast.Pass()
                else:
                    del body[0]
    return ast.unparse(tree) + "\n"


def literal_lines(text: str, indent: int) -> list[str]:
    """A payload as a parenthesised string literal, in lines of :data:`LINE` characters, for a statement
    indented by ``indent``: the first line (the opening parenthesis) continues the statement."""
    pad = " " * indent
    chunks = [text[i:i + LINE] for i in range(0, len(text), LINE)] or [""]
    return ["("] + [f'{pad}    "{chunk}"' for chunk in chunks] + [f"{pad})"]


def writer_statements(text: str, target: str, indent: int, more: list[str] | None = None) -> list[str]:
    """Statements (relative to a function body) that write the payload's files as a zip archive to
    the path expression ``target``; ``indent`` is the body's indentation in the script; ``more``: statements
    that add to ``files`` (a dict of member name -> text) before it is written."""
    literal = "\n".join(literal_lines(text, indent))
    return [
        "import base64, json, lzma, zipfile",
        f"files = json.loads(lzma.decompress(base64.b64decode({literal})))",
        *(more or []),
        f"with zipfile.ZipFile({target}, \"w\") as archive:",
        "    for member, text in sorted(files.items()):",
        "        archive.writestr(member, text)",
    ]


def installed_check(version: str) -> list[str]:
    """Statements that return from the loader when nbconvert-kfp ``version`` (with its script tools) is installed:
    the package is found and its ``__init__``'s ``__version__`` read, nothing imported."""
    return [
        "# Where nbconvert-kfp of the version that wrote this script is installed, its own tools serve (the package",
        "# is found and its version read, nothing imported); elsewhere the zip archive this script carries does.",
        "import importlib.util",
        "try:",
        '    found = importlib.util.find_spec("nbconvert_kfp")',
        '    init = found.origin if found is not None and found.origin else ""',
        '    if init and os.path.isfile(os.path.join(os.path.dirname(init), "script", "cli.py")):',
        '        with open(init, encoding="utf-8") as stream:',
        '            versions = [line.split("=", 1)[1].strip()[1:-1] for line in stream if line.startswith("__version__ =")]',
        f"        if versions[:1] == [{json.dumps(version)}]:",
        "            return",
        "except (ImportError, ValueError, OSError):",
        "    pass",
    ]


def loader_function(name: str, docstring: str, text: str, installed_version: str | None = None) -> str:
    """A function that unpacks the payload into a zip archive in a private temporary folder and puts
    that archive first on ``sys.path`` (once per process); with ``installed_version``, only where
    nbconvert-kfp of that version is not installed (:func:`installed_check`)."""
    marker = f"nbconvert-kfp-{digest(text)}.zip"
    body = [
        docstring,
        "import atexit, os, shutil, sys, tempfile",
        "",
        f"if any(entry.endswith({marker!r}) for entry in sys.path):",
        "    return",
        *(installed_check(installed_version) if installed_version else []),
        "directory = tempfile.mkdtemp(prefix=\"nbconvert-kfp-\")",
        "atexit.register(shutil.rmtree, directory, True)",
        f"path = os.path.join(directory, {marker!r})",
        *writer_statements(text, "path", 4),
        "sys.path.insert(0, path)",
    ]
    lines = [f"def {name}():"]
    for statement in body:
        lines.append("    " + statement if statement else "")
    return "\n".join(lines) + "\n"


def data_payload(files: Mapping[str, bytes]) -> str:
    """Data files (relative path -> content) as one base64 string: a zip archive, xz-compressed; the same
    files always give the same string (fixed member dates)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for name in sorted(files):
            zipped.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), files[name])
    return payload_bytes(buffer.getvalue())


def extractor_statements(text: str, target: str, indent: int) -> list[str]:
    """Statements (relative to a function body) that unpack a :func:`data_payload` into the folder ``target``."""
    literal = "\n".join(literal_lines(text, indent))
    return [
        "import base64, io, lzma, zipfile",
        f"packed = io.BytesIO(lzma.decompress(base64.b64decode({literal})))",
        "with zipfile.ZipFile(packed) as archive:",
        f"    archive.extractall({target})",
    ]
