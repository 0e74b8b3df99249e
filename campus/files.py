"""Writing files that hold secrets: atomically, and never readable by others."""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, text: str, mode: int, group: int | None = None) -> None:
    """Write ``path`` atomically, created with ``mode`` (never briefly wider) and,
    when given, owned by ``group``."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, group)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
