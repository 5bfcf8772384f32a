"""Crash-safe file writing: every file the package writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (atomic on POSIX).

    :param path: the final file.
    :param suffix: suffix of the temporary file (default: that of ``path``), for writers that
        choose the format from it (matplotlib) or append one (SB3 appends ``.zip``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """The CSV at ``path`` as a DataFrame (empty if the file does not exist yet)."""
    import pandas as pd

    return pd.read_csv(path) if Path(path).exists() else pd.DataFrame()


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append one row to a CSV by rewriting it atomically: a kill leaves the old file or the new one, never half."""
    import pandas as pd

    table = pd.concat([read_rows(path), pd.DataFrame([row])], ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
