"""Shared test helpers."""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_handler(folder: str, module: str = "app") -> ModuleType:
    """Import handlers/<folder>/<module>.py the way Lambda would (its folder on sys.path)."""
    path = ROOT / "handlers" / folder / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"handlers_{folder}_{module}", path)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up there
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(loaded)
    finally:
        sys.path.remove(str(path.parent))
    return loaded


def zip_files(files: dict[str, str]) -> bytes:
    """A Lambda deployment zip holding these files (name -> source text)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
