"""Fingerprints of what a stage reads from outside the cache, folded into its cache key.

A stage key hashes the recipe (components, parameters, plugin versions) and its inputs' keys.
Two things it cannot see are fingerprinted here, so a change to them is a new key (a rerun)
instead of a silently reused result:

- external inputs: the files and folders a component reads (a photo folder, a dataset root,
  a weights file), as the component declares them (`Component.external_inputs`);
- plugin source: for a plugin installed editable (`pip install -e`: direct_url.json says
  `dir_info.editable`) or imported from outside site-packages, the files of the component's
  top-level package, since editing them changes results without changing the version.

What is hashed (cheap enough to run on every `aist run` and `aist check`):
- a folder: every file below it (symlinks followed; names starting with "." and __pycache__
  skipped) by relative name, size and modification time (ns);
- a single file: its size and the SHA-256 of its content when it is at most
  `CONTENT_HASH_LIMIT` bytes, else its size and modification time;
- plugin source files: their content (SHA-256), so touching a file or checking it out again
  unchanged does not rerun anything; files above `CONTENT_HASH_LIMIT` by size and mtime;
- a path that does not exist: the word "missing" (it becomes a new key once it appears).

`AIST_SOURCE_FINGERPRINT=0` leaves plugin sources out of keys (for a plugin developer whose
edits do not change results, or a test that must not see other people's edits); external
inputs are always fingerprinted.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

CONTENT_HASH_LIMIT = 64 * 1024 * 1024  # bytes; larger single files are fingerprinted by size and mtime
SOURCE_ENV = "AIST_SOURCE_FINGERPRINT"


def _walk(root: Path) -> Iterable[tuple[str, os.stat_result, Path]]:
    """(relative name, stat, path) of every file below `root`, sorted. Links to folders are not
    followed, as the readers' `Path.rglob` does not follow them (a link to `/` must not make
    the key walk the whole machine); an entry that cannot be read is left out, as the reader
    will skip it."""
    for folder, dirs, files in os.walk(root, followlinks=False, onerror=lambda _error: None):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".pyc"):
                continue
            path = Path(folder) / name
            try:
                yield path.relative_to(root).as_posix(), path.stat(), path
            except OSError:  # a dangling link, a file removed while walking, no permission
                continue


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_path(path: str | os.PathLike, content: bool = False) -> dict[str, Any]:
    """Fingerprint one file or folder: {"path", "kind": file|folder|missing, "files", "bytes", "digest"}.

    `content`: hash file contents (up to CONTENT_HASH_LIMIT each) instead of modification times,
    also inside folders (meant for source trees, which are small). Raises OSError only for a
    path that exists but cannot be read (permissions), with the path in the message.
    """
    path = Path(path).expanduser()
    h = hashlib.sha256()
    if not path.exists():
        return {"path": str(path), "kind": "missing", "files": 0, "bytes": 0, "digest": "missing"}
    if path.is_file():
        st = path.stat()
        token = _file_digest(path) if st.st_size <= CONTENT_HASH_LIMIT else f"mtime:{st.st_mtime_ns}"
        h.update(f"{st.st_size}\0{token}".encode())
        return {"path": str(path), "kind": "file", "files": 1, "bytes": st.st_size, "digest": h.hexdigest()[:16]}
    files = total = 0
    for rel, st, file in _walk(path):
        if content and st.st_size <= CONTENT_HASH_LIMIT:
            token = _file_digest(file)
        else:
            token = f"mtime:{st.st_mtime_ns}"
        h.update(f"{rel}\0{st.st_size}\0{token}\n".encode())
        files += 1
        total += st.st_size
    return {"path": str(path), "kind": "folder", "files": files, "bytes": total, "digest": h.hexdigest()[:16]}


# ---------------------------------------------------------------------------- plugin source
def _in_site_packages(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def _is_editable(distribution: str) -> bool:
    """True when pip recorded the distribution as an editable install (PEP 610 direct_url.json)."""
    try:
        text = metadata.distribution(distribution).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError):
        return False


def plugin_source_paths(distribution: str, target: str) -> list[Path]:
    """The files of a component's top-level package when they may change under the same version.

    `target` is the registry's "module:Class". Returns the package folder(s) (or the module file
    of a single-module plugin) when `distribution` is installed editable or the package is
    imported from outside site-packages/dist-packages; [] for an ordinary installed wheel.
    Raises ImportError when the module cannot be imported (the recipe check reports it first).
    """
    top = target.partition(":")[0].split(".")[0]
    module = sys.modules.get(top) or importlib.import_module(top)
    paths = [Path(p) for p in getattr(module, "__path__", [])] or ([Path(module.__file__)] if getattr(module, "__file__", None) else [])
    if not paths:
        return []
    if _is_editable(distribution) or not all(_in_site_packages(p.resolve()) for p in paths):
        return sorted(paths)
    return []


def source_fingerprint(distribution: str, target: str) -> dict[str, Any] | None:
    """Content fingerprint of `plugin_source_paths` (one digest over all of them), or None (also
    when $AIST_SOURCE_FINGERPRINT is 0/false/no)."""
    if os.environ.get(SOURCE_ENV, "1").strip().lower() in ("0", "false", "no"):
        return None
    paths = plugin_source_paths(distribution, target)
    if not paths:
        return None
    parts = [fingerprint_path(p, content=True) for p in paths]
    digest = hashlib.sha256("".join(p["digest"] for p in parts).encode()).hexdigest()[:16]
    return {"paths": [str(p) for p in paths], "files": sum(p["files"] for p in parts), "digest": digest}
