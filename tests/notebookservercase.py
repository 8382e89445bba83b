"""A notebook for the notebook-server tests, and the server's pinned image."""

from __future__ import annotations

from fakekube import DIGEST, IMAGE

PINNED = f"{IMAGE}@{DIGEST}"

CELLS = [
    ("imports", "import math"),
    ("step:load", "data = [1.0, 2.0, 3.0]"),
    (["step:train", "prev:load"], "total = math.fsum(data)"),
    (["step:count", "prev:load", "image:python:3.12-slim"], "n = len(data)"),
]
