"""The model disk cache: converted GGUF checkpoints written atomically, validated before use,
and healed (a damaged entry is rebuilt, temporary folders of killed conversions are removed).

Each entry is a folder ``gguf-<sha256 prefix>`` with transformers' files and a ``COMPLETE``
manifest of every file's size, written last inside a temporary folder that is then renamed into
place, so a folder with a manifest was complete when written; ``cache_problem`` checks it is
still whole (sizes, the safetensors header, the config and tokenizer JSON).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """The disk cache folder (``ECCO_CACHE_DIR`` overrides the user cache dir)."""
    env = os.environ.get("ECCO_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ecco-explorer"))


def file_hash(path: Path) -> str:
    """sha256 of a file, hex (the disk-cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


HASH_INDEX = "file-hashes.json"
"""In the cache root: ``{"path|size|mtime_ns": sha256}``, so a warm load skips hashing the file."""


def cached_file_hash(path: Path) -> str:
    """``file_hash`` remembered per (path, size, mtime_ns) in ``HASH_INDEX``; a changed file is re-hashed."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_file = cache_root() / HASH_INDEX
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    if isinstance(index.get(key), str):
        return index[key]
    digest = file_hash(path)
    index[key] = digest
    try:  # written atomically; a read-only cache only costs the hash next time
        index_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_file.with_name(f".{HASH_INDEX}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        tmp.replace(index_file)
    except OSError as error:
        log.warning("could not write the file-hash index at %s: %s", index_file, error)
    return digest


def gguf_cache_dir(gguf: Path) -> Path:
    return cache_root() / f"gguf-{cached_file_hash(gguf)[:20]}"


TEMP_PREFIX = ".tmp-"
STALE_SECONDS = 3600
"""A temporary folder without a live owner process, or without a readable owner and this old, is stale."""


def write_cache(model, tokenizer, target: Path) -> None:
    """Write atomically: a temporary folder (named after this process) filled, given a
    ``COMPLETE`` manifest of every file's size, then renamed into place."""
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "COMPLETE").write_text(json.dumps({"format": 2, "sizes": sizes}))
        if target.exists():
            remove_folder(target)
        tmp.rename(target)
        tmp = None
    except OSError as error:  # a read-only or full disk only costs speed next time
        log.warning("could not write the model disk cache at %s: %s", target, error)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    """Delete a cache folder: renamed aside first, so no process sees it half deleted."""
    aside = folder.with_name(f"{TEMP_PREFIX}{os.getpid()}-old-{folder.name}")
    try:
        folder.rename(aside)
    except OSError:
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)


def _owner_alive(name: str) -> bool | None:
    """Whether the process that made temporary folder ``name`` runs (None: no owner in the name)."""
    owner = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    if not owner.isdigit():
        return None
    if int(owner) == os.getpid():
        return True
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, under another user
    return True


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Remove temporary folders that killed conversions left in the cache ``root``; returns them."""
    removed = []
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for folder in candidates:
        alive = _owner_alive(folder.name)
        try:
            old = time.time() - folder.stat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if alive is False or (alive is None and old):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.warning("removed a stale temporary folder of an interrupted conversion: %s", folder)
    return removed


def cache_problem(folder: Path) -> str | None:
    """Why a disk-cache folder cannot be trusted (sizes, safetensors header, config, tokenizer), or None."""
    try:
        manifest = json.loads((folder / "COMPLETE").read_text() or "{}")
    except ValueError:
        manifest = {}  # the first format wrote "ok"
    sizes = manifest.get("sizes", {}) if isinstance(manifest, dict) else {}
    for name, size in sizes.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            found = path.stat().st_size if path.is_file() else "missing"
            return f"{name} should be {size} bytes, found {found}"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no .safetensors weights"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return f"{path.name}: {problem}"
    for name in ("config.json", "tokenizer_config.json"):
        try:
            if not isinstance(json.loads((folder / name).read_text()), dict):
                return f"{name} is not a JSON object"
        except (OSError, ValueError) as error:
            return f"{name} is unreadable ({error})"
    tokenizer = folder / "tokenizer.json"
    if tokenizer.exists() and "tokenizer.json" not in sizes:  # the manifest's size already vouches
        try:
            json.loads(tokenizer.read_text())
        except (OSError, ValueError) as error:
            return f"tokenizer.json is unreadable ({error})"
    if not sizes:
        _write_manifest(folder)  # an entry of the first format, found whole: later checks are quick
    return None


def _write_manifest(folder: Path) -> None:
    """``COMPLETE`` with every file's size, replaced atomically (a read-only cache keeps the old one)."""
    sizes = {
        p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != "COMPLETE"
    }
    tmp = folder / f".COMPLETE.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({"format": 2, "sizes": sizes}))
        os.replace(tmp, folder / "COMPLETE")
    except OSError as error:
        log.info("could not upgrade the disk-cache manifest at %s: %s", folder, error)
        tmp.unlink(missing_ok=True)


def safetensors_problem(path: Path) -> str | None:
    """Whether a .safetensors file's header parses and its tensors end exactly at the file's end."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "shorter than its header"
        length = struct.unpack("<Q", head)[0]
        if length > size - 8:
            return "its header runs past the end of the file"
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return "its header is not JSON"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + length + max(ends, default=0) != size:
        return f"its tensors need {8 + length + max(ends, default=0)} bytes, the file has {size}"
    return None
