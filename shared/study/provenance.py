"""Where a study's numbers come from: the source revision and the data.

* `check_clean_tree`: a `powered` or `paper` study on a modified source tree is refused
  unless the user allows it (`--allow-dirty`), and the permission is recorded: a verdict
  must be traceable to the code that trained.
* `synthetic_data`: the `data` block of a run on generated data, naming the generator and
  the SHA-256 of its settings (canonical JSON), so two runs on the same phantom can be
  told apart from two runs on different ones.
* `user_data` / `file_manifest`: the `data` block of a run on a user's folder: a SHA-256
  per file read, kept in `data_manifest.json` in the run folder (the user's folder is
  never written) and summarised in the claims by the manifest's own hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from shared.io.atomic import write_json

CLEAN_TREE_PRESETS = ("powered", "paper")
DATA_MANIFEST_FILE = "data_manifest.json"
_CHUNK = 1 << 20


class DirtyTreeError(ValueError):
    """A study that must be traceable was asked to run on modified source files."""


def is_dirty(revision: str) -> bool:
    return bool(revision) and revision.endswith("+dirty")


def check_clean_tree(preset: str, revision: str, *, allow_dirty: bool) -> None:
    """Refuses a `powered` or `paper` study on a modified tree unless allowed.

    Args:
        preset: str. The preset the run declares.
        revision: str. `shared.tracking.runs.git_revision()` ('' outside a checkout: an
            installed package has no tree to be dirty).
        allow_dirty: bool. The user's explicit permission (`--allow-dirty`).

    Raises:
        DirtyTreeError: one line naming the revision and the way out.
    """
    if preset in CLEAN_TREE_PRESETS and is_dirty(revision) and not allow_dirty:
        raise DirtyTreeError(
            f"source tree: revision {revision} has uncommitted changes; a '{preset}' study "
            f"must come from a committed revision (commit first, or pass --allow-dirty, "
            f"which the claims record)")


def provenance_block(revision: str, *, allow_dirty: bool) -> dict:
    return {"revision": revision or "", "dirty": is_dirty(revision),
            "allow_dirty": bool(allow_dirty)}


def settings_sha256(settings) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of `settings`."""
    from shared.study.protocol import canonical_json

    return hashlib.sha256(canonical_json(settings, default=str).encode("utf-8")).hexdigest()


def synthetic_data(generator: str, settings) -> dict:
    """The `data` block of a run on generated data.

    Args:
        generator: str. The generating function's dotted name
            ("lge_qa.phantom.make_cohort").
        settings: dict or dataclass. Everything the generator was called with (sizes,
            difficulty, seed); hashed, not copied.
    """
    if not generator:
        raise ValueError("generator: expected the generating function's name, got ''")
    return {"source": "synthetic", "generator": str(generator),
            "settings_sha256": settings_sha256(settings)}


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_manifest(root, files=None) -> dict:
    """A SHA-256 per file read from a user's data folder.

    Args:
        root: str or Path. The data folder (read, never written).
        files: iterable of paths, optional. The files the loader read; default every
            regular file under `root`.

    Returns:
        {"root": str, "files": [{"path": relative str, "bytes": int, "sha256": str}]},
        sorted by path.
    """
    root = Path(root)
    paths = sorted(p for p in root.rglob("*") if p.is_file()) if files is None \
        else sorted({Path(f) if Path(f).is_absolute() else root / f for f in files})
    rows = []
    for path in paths:
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            relative = str(path)
        rows.append({"path": relative, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return {"root": str(root), "files": rows}


def manifest_sha256(manifest: dict) -> str:
    """The hash that names a manifest: its file list only (not where the folder was)."""
    return settings_sha256([[f["path"], f["sha256"]] for f in manifest["files"]])


def user_data(root, out_dir, files=None) -> dict:
    """Writes `<out_dir>/data_manifest.json` and returns the run's `data` block."""
    manifest = file_manifest(root, files)
    write_json(Path(out_dir) / DATA_MANIFEST_FILE, manifest)
    return {"source": "user", "root": manifest["root"], "files": len(manifest["files"]),
            "manifest": DATA_MANIFEST_FILE, "manifest_sha256": manifest_sha256(manifest)}


def read_data_manifest(path) -> dict:
    """Reads a `data_manifest.json`.

    Raises:
        ValueError: not JSON, or a field missing or of the wrong kind (one line naming
            the file and the field).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ValueError(f"{path}: field 'files': expected a list of files read")
    for k, row in enumerate(data["files"]):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: field 'files/{k}': expected an object")
        for field, kind in (("path", str), ("bytes", int), ("sha256", str)):
            if not isinstance(row.get(field), kind) or isinstance(row.get(field), bool):
                raise ValueError(f"{path}: field 'files/{k}/{field}': expected "
                                 f"{'a string' if kind is str else 'an integer'}, got "
                                 f"{row.get(field)!r}")
        if len(row["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in row["sha256"]):
            raise ValueError(f"{path}: field 'files/{k}/sha256': expected 64 hex digits, got "
                             f"{row['sha256']!r}")
    return data
