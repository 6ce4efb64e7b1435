"""Tests of the mappings; :func:`write_exports` lays out export files as a user's folder."""

from __future__ import annotations

from pathlib import Path


def write_exports(folder: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (name -> the export's bytes, exactly as the vendor wrote them) into
    ``folder`` (created if needed) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder
