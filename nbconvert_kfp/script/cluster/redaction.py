"""Redaction: text that came from a server made safe to show on a terminal and in logs.

Two things are taken out. Terminal control sequences (ESC sequences such as CSI colours and
OSC titles, C1 controls, and every other C0 control but newline and tab), with which a server
could rewrite or hide what the user sees. And secrets (the KFP token), in the forms a server or
proxy is likely to echo them: as they are, in upper or lower case, percent-encoded, base64-encoded,
or cut short (any piece from their start of at least ``MIN_PREFIX`` characters). ``Redacting``
wraps an output stream so that everything written through it is cleaned. Standard library only;
the generated script carries it.
"""

from __future__ import annotations

import base64
import contextlib
import re
import sys
import threading
from typing import Any, Iterable, Iterator, TextIO
from urllib.parse import quote, quote_plus

#: The shortest start of a secret that is masked on its own.
MIN_PREFIX = 8
#: What a secret is replaced with.
MASK = "***"
_CONTROLS = re.compile(
    r"\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC ... BEL or ST
    r"|\x9d[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # C1 OSC
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI, ESC [ or C1
    r"|\x1b[ -/]*[0-~]?"  # other ESC sequences (ESC c, ESC ( B ...)
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # other C0 (newline and tab stay), DEL, C1
_LOCK = threading.Lock()
_SECRETS: set[str] = set()


def terminal_text(text: Any) -> str:
    """``text`` without terminal control sequences and control characters; newlines and tabs stay."""
    return _CONTROLS.sub("", str(text))


def forms(secret: str) -> list[str]:
    """The forms in which ``secret`` may be echoed (case aside: matching ignores case)."""
    raw = secret.encode("utf-8", "replace")
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    for data in (raw, b"Bearer " + raw):
        for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
            found.add(encoded.decode().rstrip("="))
    return sorted((form for form in found if form), key=len, reverse=True)


def remember(secret: str | None) -> None:
    """Mask ``secret`` in everything ``Redacting`` streams write from now on."""
    secret = (secret or "").strip()
    if secret.lower().startswith("bearer "):
        secret = secret[7:].strip()
    if len(secret) >= 4:
        with _LOCK:
            _SECRETS.add(secret)


def remembered() -> list[str]:
    """The secrets ``remember`` was given."""
    with _LOCK:
        return sorted(_SECRETS)


def mask(text: Any, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every form of each secret (``forms``), and every start of one of at least
    ``MIN_PREFIX`` characters, replaced by ``MASK``; the remembered secrets are masked too."""
    text = str(text)
    for secret in {s for s in secrets if s} | set(remembered()):
        bare = secret[7:].strip() if secret.lower().startswith("bearer ") else secret
        for form in forms(bare):
            text = _mask_form(text, form)
    return text


def _mask_form(text: str, form: str) -> str:
    """``text`` with each piece that is ``form`` or a start of it (of at least MIN_PREFIX characters) masked."""
    start = form[:min(len(form), MIN_PREFIX)]
    lowered, wanted = text.lower(), form.lower()
    out, at = [], 0
    while True:
        found = lowered.find(start.lower(), at)
        if found < 0:
            return "".join(out) + text[at:]
        end = found + len(start)
        while end - found < len(wanted) and end < len(text) and lowered[end] == wanted[end - found]:
            end += 1
        out += [text[at:found], MASK]
        at = end


def clean(text: Any, secrets: Iterable[str | None] = ()) -> str:
    """``text`` fit to show: control sequences removed, secrets masked."""
    return mask(terminal_text(text), secrets)


class Redacting:
    """A text stream that writes everything ``clean``: what a server said reaches the terminal
    without control sequences or remembered secrets."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` cleaned; return the length given, as streams do."""
        self.stream.write(clean(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Inside the block, ``sys.stdout`` and ``sys.stderr`` write through ``Redacting``."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Redacting(sys.stdout), Redacting(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = streams
