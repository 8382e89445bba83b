"""The root of the script tools' errors: one class a caller catches for any failure it can explain in a line."""

from __future__ import annotations


class ScriptError(Exception):
    """A script tool could not do what was asked; the message is one line for the user, without secrets."""
