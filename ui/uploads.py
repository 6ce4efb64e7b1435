"""Uploaded files: the size limit and the cleaned file name (an upload's own name is never a path)."""

from __future__ import annotations

import re
import unicodedata

#: Largest upload (MB) of the Import page's export files; Streamlit's own limit
#: (``server.maxUploadSize`` in ui/streamlit_config.toml) is the same.
MAX_UPLOAD_MB = 200
ALLOWED_SUFFIXES = (".csv", ".tsv", ".txt", ".toml")
MAX_NAME = 120


def safe_file_name(name: str | None, fallback: str) -> str:
    """A plain file name made from an uploaded file's name, safe to create in a private folder.

    Only the part after the last ``/`` or ``\\`` counts; characters other than letters,
    digits, space and ``._-()`` become ``_``; leading dots and spaces go (no ``..``, no
    hidden files); at most ``MAX_NAME`` characters; the suffix must be one of
    ``ALLOWED_SUFFIXES``. Anything left empty or without such a suffix gives ``fallback``.
    """
    text = unicodedata.normalize("NFKC", str(name or ""))
    text = re.split(r"[/\\\\]", text)[-1]
    text = re.sub(r"[^\w .()\-]", "_", text, flags=re.ASCII)
    text = text.lstrip(". ").rstrip(" ")
    if "." not in text:
        return fallback
    stem, _, suffix = text.rpartition(".")
    suffix = "." + suffix.lower()
    if suffix not in ALLOWED_SUFFIXES or not stem.strip("._ "):
        return fallback
    return stem[: MAX_NAME - len(suffix)] + suffix
