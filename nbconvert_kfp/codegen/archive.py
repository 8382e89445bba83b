"""Archives: code the generated pipeline carries (the step runtime, the script tools, the notebook's
shared cells) packed as one deterministic zip, and the Python that writes or loads it.

The same files always give the same bytes (fixed timestamps and order, deflate level 9),
so the commands that carry an archive, and KFP's cache keys with them, change only when
the code does. In the script an archive is a base85 string literal, in lines of
:data:`LINE` characters.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from typing import Mapping

#: Characters per line of an archive's base85 literal.
LINE = 100
_DATE = (1980, 1, 1, 0, 0, 0)


def pack(files: Mapping[str, str | bytes]) -> bytes:
    """A zip archive of ``{path: text or bytes}``, byte-identical for the same files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(files):
            content = files[path]
            data = content.encode("utf-8") if isinstance(content, str) else content
            info = zipfile.ZipInfo(path, date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buffer.getvalue()


def digest(data: bytes) -> str:
    """A short content hash of an archive."""
    return hashlib.sha256(data).hexdigest()[:16]


def literal_lines(data: bytes, indent: int) -> list[str]:
    """The archive as a parenthesised base85 string literal: its lines, the first not indented."""
    text = base64.b85encode(data).decode("ascii")
    pad = " " * indent
    chunks = [text[i:i + LINE] for i in range(0, len(text), LINE)] or [""]
    return ["("] + [f'{pad}    "{chunk}"' for chunk in chunks] + [f"{pad})"]


def loader_function(name: str, docstring: str, data: bytes) -> str:
    """A function that puts the archive's modules on ``sys.path`` (from a private temporary file)."""
    literal = "\n".join(literal_lines(data, 4))
    return (
        f"def {name}():\n"
        f"    {docstring}\n"
        "    import atexit\n"
        "    import base64\n"
        "    import shutil\n"
        "    import sys\n"
        "    import tempfile\n"
        "\n"
        f'    if any(entry.endswith("/{digest(data)}.zip") for entry in sys.path):\n'
        "        return\n"
        f"    archive = base64.b85decode({literal})\n"
        f'    directory = tempfile.mkdtemp(prefix="nbconvert-kfp-")\n'
        "    atexit.register(shutil.rmtree, directory, True)\n"
        f'    path = directory + "/{digest(data)}.zip"\n'
        '    with open(path, "wb") as fh:\n'
        "        fh.write(archive)\n"
        "    sys.path.insert(0, path)\n"
    )
