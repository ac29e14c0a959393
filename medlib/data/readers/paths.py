"""Where a source's images are: image roots found by looking, absolute paths rebased onto a new root."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from medlib.data.readers.common import ReadResult, first_item


def find_image_root(names: Iterable[str], start: Path, limit: int = 6) -> Path | None:
    """The first of start and its parents (at most `limit` levels up) under which a relative image name exists.

    Med-R1's split files live in `Splits/<kind>/<split>/X_test.json` while their paths (`Images/...`) are
    relative to the OmniMedVQA root; this finds that root instead of reporting every image missing.
    """
    candidates = [n for n in names if isinstance(n, str) and n.strip()][:20]
    folder = Path(os.path.abspath(start))
    for _ in range(limit + 1):
        if any((folder / name.strip().replace("\\", "/")).is_file() for name in candidates):
            return folder
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def rebase_absolute(name: str, image_root: Path) -> Path | None:
    """The file under image_root that an absolute path from another machine names, or None.

    `/scratch/FLARE_Task5/train/training/Xray/IU_XRay/imagesTr/1.png` with image_root `/data/FLARE_Task5`
    is found as `/data/FLARE_Task5/train/training/…/1.png`: the longest tail of the path that exists.
    """
    parts = PurePosixPath(name.strip().replace("\\", "/")).parts[1:]
    for start in range(len(parts)):
        candidate = Path(image_root, *parts[start:])
        if candidate.is_file():
            return candidate
    return None


def common_root(paths: Iterable[Path]) -> Path:
    """The deepest folder that holds every path."""
    return Path(os.path.commonpath([os.path.abspath(p) for p in paths]))


def inside(path: Path, root: Path) -> bool:
    """True when path, with every symlink followed, lies inside root (also resolved)."""
    return RealPaths(root).inside(path)


class RealPaths:
    """Symlink-resolved paths under one root, with each folder resolved once (images share folders)."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._folders: dict[str, str] = {}

    def real(self, path: Path) -> str:
        """The path with every symlink followed."""
        folder, name = os.path.split(os.path.abspath(path))
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder)
        full = os.path.join(self._folders[folder], name)
        return os.path.realpath(full) if os.path.islink(full) else full

    def inside(self, path: Path) -> bool:
        """True when path's real location lies inside the root's real location."""
        real = self.real(path)
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)


def image_root_for(src: Path, files: list[Path], key: str, image_root: Path | None, result: ReadResult) -> Path:
    """image_root, else the nearest folder holding the first items' images (noted), else src's folder."""
    folder = src if src.is_dir() else src.parent
    if image_root:
        return Path(image_root)
    names = []
    for path in files:
        first = first_item(path)
        value = first.get(key) if isinstance(first, dict) else None
        names += value if isinstance(value, list) else [value]
    found = find_image_root([n for n in names if isinstance(n, str)], folder)
    if found is None:
        result.notes.append(f"images not found under {folder} or its parents; pass --image-root (the folder the "
                            f"{key} paths are relative to)")
        return folder
    if found != Path(os.path.abspath(folder)):
        result.notes.append(f"image paths resolved against {found} (a parent of the JSON files); "
                            "--image-root chooses another")
    return found
