"""Names and paths a user gives, checked before anything is written: nothing may leave its folder."""

from __future__ import annotations

import re
from pathlib import Path

from medlib.pipeline.config import ConfigError

# A file/folder name on every file system and in every shell and sbatch line: no separators,
# no `..`, no whitespace or control characters, not hidden; 1–200 characters (sweeps make long names).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


class UnsafePath(ConfigError):
    """A user-given name or path that would escape the folder it must stay in."""


def check_experiment_name(name: object, where: str, field: str = "common.experiment") -> str:
    """`name` when it is a safe folder name (results/<name>, runs/<name>); else UnsafePath naming file and field."""
    if not isinstance(name, str) or not name:
        raise UnsafePath(f"{where}: {field}: expected a non-empty name, got {name!r}")
    if SAFE_NAME.fullmatch(name) and ".." not in name:
        return name
    if "\n" in name or "\r" in name or any(ord(char) < 32 for char in name):
        reason = "contains a line break or control character"
    elif "/" in name or "\\" in name or Path(name).is_absolute():
        reason = "is a path, not a name"
    elif ".." in name:
        reason = "contains '..'"
    else:
        reason = "uses characters other than letters, digits and . _ + = - (or starts with one of . _ + = -)"
    raise UnsafePath(f"{where}: {field}: {name!r} {reason}; an experiment name becomes the folder "
                     f"results/<name>/, so use letters, digits and . _ + = - only (e.g. tiny_lr2e-3)")


def inside(path: Path | str, folder: Path | str, where: str, field: str) -> Path:
    """`path` resolved (symlinks followed), when it lies inside `folder`; else UnsafePath naming the field."""
    resolved = Path(folder, path).resolve()
    root = Path(folder).resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePath(f"{where}: {field}: {path} resolves to {resolved}, outside {root}")
    return resolved


def check_single_line(value: str, where: str, field: str) -> str:
    """`value` when it holds no line break (text that goes into one line of a script); else UnsafePath."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise UnsafePath(f"{where}: {field}: {value!r} contains a line break; it would inject a line into "
                         "the generated script")
    return value


def looks_local(name: str, root: Path | str = ".") -> bool:
    """Whether a model reference is meant as a folder (not a hub id `owner/name`): it exists, is absolute or
    relative-looking (`./`, `~`), has other than exactly one `/`, or its first part is a folder under `root`."""
    if not name:
        return False
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1 or (Path(root) / path).exists():
        return True
    return (Path(root) / path.parts[0]).is_dir()
