"""Wheels of distributions installed in this environment, so a test can fill a fresh venv without the network.

:func:`repack` zips an installed distribution back into a wheel (its files and its .dist-info, with a
new RECORD); :func:`closure` is the set of distributions a list of requirements pulls in here.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_SKIPPED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}  # written by the installer


def requirements(requires: Iterable[str], extras: Iterable[str] = ()) -> list[Requirement]:
    """The requirements of ``requires`` (Requires-Dist lines) that apply here with ``extras`` asked for."""
    wanted = ["", *extras]
    reqs = [Requirement(r) for r in requires]
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in wanted)]


def closure(requires: Iterable[str], extras: Iterable[str] = ()) -> dict[str, metadata.Distribution]:
    """Every installed distribution that ``requires`` (with ``extras``) needs, directly or not, by name."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = requirements(requires, extras)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        dist = found.setdefault(name, metadata.distribution(req.name))  # PackageNotFoundError: not here
        todo.extend(requirements(dist.requires or (), req.extras))
    return found


def _wheel_tag(dist: metadata.Distribution) -> str:
    wheel_info = dist.read_text("WHEEL") or ""
    tags = re.findall(r"^Tag:\s*(\S+)", wheel_info, re.MULTILINE)
    if not tags:
        raise ValueError(f"{dist.metadata['Name']} was not installed from a wheel (no Tag in WHEEL)")
    return tags[0]


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def repack(dist: metadata.Distribution, out_dir: Path) -> Path:
    """Write ``dist`` (installed here) as a wheel into ``out_dir``; files outside site-packages are left out."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = out_dir / f"{name}-{dist.version}-{_wheel_tag(dist)}.whl"
    dist_info = None
    record: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as whl:
        for file in dist.files or ():
            arcname = file.as_posix()
            parts = file.parts
            if parts[0] == ".." or "__pycache__" in parts:
                continue
            if parts[0].endswith(".dist-info"):
                dist_info = parts[0]
                if parts[-1] in _SKIPPED:
                    continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            whl.writestr(arcname, data)
            record.append(_record_line(arcname, data))
        if dist_info is None:
            raise ValueError(f"{dist.metadata['Name']}: no .dist-info among its installed files")
        record.append(f"{dist_info}/RECORD,,")
        whl.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path
