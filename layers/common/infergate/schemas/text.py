"""Text a person reads back in a listing (an email address, a key's name): no character that
hides there or rearranges what is around it."""

from __future__ import annotations

import unicodedata


def hidden(text: str, *, spaces: bool = False) -> bool:
    """Whether `text` holds what a reader cannot see: control and format characters (bidirectional
    overrides, zero-width ones), unassigned or private ones, separators (a plain space too, unless
    `spaces`), or the replacement character."""
    return any((unicodedata.category(char)[0] in "CZ" and not (spaces and char == " ")) or char == "\ufffd"
               for char in text)
