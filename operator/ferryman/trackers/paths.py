"""The one path-safety rule for every tracker writer and reader.

Writing: a name that comes from a source (an artifact path, a file of a run directory) is normalised
(`a//./b` -> `a/b`) and must stay inside the destination root: absolute names, `..`, empty names and NUL
bytes are refused, and so is a target that an existing symlink inside the destination would carry out of it.

Reading: a source tree is walked without following any symlink whose target lies outside the source root
(a symlink in a log directory pointing at `/var/run/secrets/...` is reported, never read). Symlinks that stay
inside the root are followed, each real directory visited once (real names before symlinked ones, loops
cut).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from ferryman.trackers.model import Outcome, OutcomeKind


class UnsafePath(ValueError):
    """A destination name that would leave the destination root."""


def safe_relative(name: str) -> str:
    """The normalised relative form of a destination name; `UnsafePath` for one that could leave the root."""
    if "\x00" in name:
        raise UnsafePath(f"{name!r} contains a NUL byte")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        raise UnsafePath(f"{name!r} is an absolute path")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"{name!r} contains '..'")
    if not parts:
        raise UnsafePath(f"{name!r} names no file")
    return "/".join(parts)


def inside(root: Path, name: str) -> Path:
    """`root / name`, normalised; `UnsafePath` if it leaves `root` (also through a symlink already there)."""
    target = root.joinpath(*safe_relative(name).split("/"))
    if not _within(os.path.realpath(target), os.path.realpath(root)):
        raise UnsafePath(f"{name!r} leads out of {root} through a symlink")
    return target


def unsafe_outcome(item: str, error: UnsafePath) -> Outcome:
    """The counted outcome of a refused name; `item` names the source file."""
    return Outcome(OutcomeKind.UNSUPPORTED, item, f"unsafe path: {error}; not written")


def escape_reason(path: Path) -> str:
    """Why a source entry (a symlink) leading out of the source root is not read."""
    return f"{path.name} leads out of the source root (to {os.path.realpath(path)}); not followed"


def leaves(root: Path, path: Path) -> bool:
    """`path` exists and resolves outside `root` (through a symlink on its way)."""
    return os.path.exists(path) and not _within(os.path.realpath(path), os.path.realpath(root))


def walk(
    directory: Path, escaped: Callable[[Path], None], root: Path | None = None
) -> Iterator[tuple[Path, list[str], list[str]]]:
    """`os.walk` of `directory` that follows symlinks only while they stay inside `root` (the directory
    itself unless given); every entry leading out is passed to `escaped` and dropped. Callers may prune the
    yielded directory names in place."""
    real_root = os.path.realpath(root if root is not None else directory)
    if not _within(os.path.realpath(directory), real_root):
        if os.path.exists(directory):
            escaped(directory)
        return
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or not _within(real, real_root):  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        path_of = Path(dirpath)
        for names in (dirnames, filenames):
            kept = []
            for name in names:
                path = path_of / name
                if path.is_symlink() and leaves(Path(real_root), path):
                    escaped(path)
                else:
                    kept.append(name)
            names[:] = kept
        dirnames.sort(key=lambda name: ((path_of / name).is_symlink(), name))  # real directories first
        yield path_of, dirnames, filenames


def files(directory: Path, escaped: Callable[[Path], None], root: Path | None = None) -> Iterator[Path]:
    """Every file below `directory` in path order (dangling symlinks included: callers report them),
    following symlinks only inside `root` (the directory itself unless given)."""
    found: list[Path] = []
    for path_of, _, filenames in walk(directory, escaped, root):
        found.extend(path_of / name for name in filenames)
    return iter(sorted(found))


def _within(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)
