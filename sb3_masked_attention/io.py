"""Crash-safe file writing: every file the package writes appears whole or not at all."""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder: expected a file name to write")
    make_dir(path.parent, "the folder of")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the permissions a plain open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110, close: bool = True) -> None:
    """Save a matplotlib figure atomically (temp file + rename), its bounding box tight around the content.

    :param fig: the figure.
    :param path: the image file; its suffix picks the format (``.png``, ``.pdf``, ``.svg``).
    :param dpi: resolution.
    :param close: close the figure afterwards (pyplot keeps every open figure alive otherwise).
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)


def make_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create the folder ``path`` (and its parents); raise ValueError if it, or a parent, is an existing file."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise ValueError(f"{what} {str(path)!r} cannot be made: {str(part)!r} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """The CSV at ``path`` as a DataFrame (empty if the file does not exist yet). Floats are parsed exactly, so a file
    read and written again (:func:`append_row`, a table rewritten with a run's rows replaced) keeps every digit."""
    import pandas as pd

    return pd.read_csv(path, float_precision="round_trip") if Path(path).exists() else pd.DataFrame()


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append one row to a CSV by rewriting it atomically: a kill leaves the old file or the new one, never half."""
    import pandas as pd

    table = pd.concat([read_rows(path), pd.DataFrame([row])], ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def save_npz(path: str | os.PathLike, arrays: dict, meta: dict | None = None) -> None:
    """Write ``arrays`` (and ``meta`` as a JSON string under the key ``meta``) to a compressed ``.npz`` atomically."""
    import json

    import numpy as np

    extra = {} if meta is None else {"meta": np.array(json.dumps(meta))}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **extra, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as bool


def memory_bytes() -> int:
    """This machine's physical memory: no file we read may claim arrays larger than it."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _npy_header(handle: Any) -> tuple[tuple[int, ...], Any] | None:
    """The shape and dtype an ``.npy`` header declares (the handle left at the data), or None if it is not one numpy
    writes (then ``np.load`` refuses the file with its caller's message)."""
    import numpy as np

    try:
        version = np.lib.format.read_magic(handle)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            return None
        shape, _, dtype = read(handle)
    except (OSError, EOFError, ValueError, SyntaxError, zipfile.BadZipFile):
        return None
    return shape, dtype


def check_array_sizes(path: str | os.PathLike, what: str) -> None:
    """Refuse an ``.npy`` or ``.npz`` whose array headers claim more data than the file holds, or more than this
    machine's memory, before numpy allocates it (a few KB of header can claim 10^12 elements).

    :raises ValueError: naming the file and the array.
    """
    import numpy as np

    path, limit = Path(path), memory_bytes()

    def declared(handle: Any, name: str, stored: int) -> int:
        header = _npy_header(handle)
        if header is None or header[1].hasobject:  # not numpy's format, or objects: np.load refuses either
            return 0
        shape, dtype = header
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size > stored - handle.tell():
            raise ValueError(
                f"{what} {str(path)!r}: array {name!r} claims shape {shape[:8]} ({size:.3g} bytes) but the file holds "
                f"{max(stored - handle.tell(), 0)} bytes for it: it is damaged or crafted"
            )
        return size

    total = 0
    if zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile):
            return  # np.load refuses it with the caller's message
        with archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as handle:
                        total += declared(handle, info.filename[:-4], info.file_size)
    else:
        with open(path, "rb") as handle:
            total = declared(handle, path.stem, path.stat().st_size)
    if total > limit:
        raise ValueError(f"{what} {str(path)!r} claims {total:.3g} bytes of arrays, more than this machine's {limit:.3g}")


def load_npz(path: str | os.PathLike, keys: tuple[str, ...], what: str, made_by: str) -> tuple[dict, dict | None]:
    """Read an ``.npz`` written by :func:`save_npz`: the ``keys`` arrays and the ``meta`` dict (None if absent).

    :param what: what the file is, for errors ("dataset", "capture file").
    :param made_by: the command that writes such files, for errors.
    :raises ValueError: the file does not exist or lacks one of ``keys``.
    """
    import json

    import numpy as np

    path = Path(path)
    expected = f"expected a file written by `{made_by}`"
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist: write one with `{made_by}`")
    check_array_sizes(path, what)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        # numpy's message suggests allow_pickle=True: never pass that advice on.
        raise ValueError(
            f"{what} {str(path)!r} is not a plain numpy archive: it is damaged or holds Python objects, which are never "
            f"loaded from a file (nothing in it ran); {expected}"
        ) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{what} {str(path)!r} is a single array, not an .npz archive: {expected}")
    with data:
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"{what} {str(path)!r} lacks {missing}: {expected}")
        try:
            arrays = {key: data[key] for key in data.files if key != "meta"}
            meta = json.loads(str(data["meta"])) if "meta" in data.files else None
        except (OSError, EOFError, ValueError, zipfile.BadZipFile):  # an object array inside, a damaged member
            raise ValueError(
                f"{what} {str(path)!r} has a member that is damaged or holds Python objects (nothing in it ran); {expected}"
            ) from None
    return arrays, meta


def yaml_data(text: str, what: str, max_nodes: int = 10_000) -> Any:
    """A YAML document read as plain data (``yaml.SafeLoader``), stricter than YAML itself: a key given twice in one
    mapping is refused (YAML keeps the last silently), and so is a document larger than ``max_nodes`` values once its
    aliases are expanded (a few KB of nested aliases can stand for billions of values).

    :param what: the file, for errors.
    :raises ValueError: naming ``what`` and the key's lines; ``yaml.YAMLError`` for a syntax error.
    """
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        try:
            size = _expanded_size(node, sizes, what)
        except RecursionError:
            raise ValueError(f"{what} nests too deeply to be a settings file") from None
        if size > max_nodes:
            raise ValueError(
                f"{what} stands for {size:.3g} values once its aliases are expanded: at most {max_nodes} are read"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], what: str) -> int:
    """Values under ``node`` with aliases expanded (memoised per node, so an alias bomb costs its own size to count);
    refuses a mapping that repeats a key."""
    import yaml

    if id(node) in sizes:
        return sizes[id(node)]
    size = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if (key.tag, key.value) in seen:
                    name = key.value if len(key.value) <= 40 else key.value[:37] + "..."
                    raise ValueError(
                        f"{what}: key {name!r} appears twice in one mapping (lines {seen[key.tag, key.value]} and "
                        f"{line}): YAML would keep the last silently; remove or rename one"
                    )
                seen[key.tag, key.value] = line
            size += _expanded_size(key, sizes, what) + _expanded_size(value, sizes, what)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, sizes, what) for item in node.value)
    sizes[id(node)] = size
    return size


#: Folders whose lock this process holds (an open file each): a trainer called again in the same process, as in a
#: notebook after an interrupted call, takes its folder over instead of refusing itself.
_HELD_LOCKS: dict[Path, Any] = {}


def hold_folder_lock(directory: str | os.PathLike, what: str = "run folder") -> bool:
    """Make ``directory`` this process's: an exclusive lock on its ``.lock`` file, held until the process ends or
    :func:`release_folder_lock` (the OS releases it on kill -9, so a killed run never blocks its rerun).

    :return: whether the lock was taken now (False: this process held it already).
    :raises ValueError: another process holds it.
    """
    import fcntl

    directory = Path(directory).resolve()
    if directory in _HELD_LOCKS:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / ".lock", "a+")  # noqa: SIM115  (held while the process writes the folder)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"{what} {str(directory)!r} is being written by another process: wait for it or stop it") from None
    _HELD_LOCKS[directory] = handle
    return True


def folder_in_use(directory: str | os.PathLike) -> bool:
    """Whether another process holds ``directory``'s lock (:func:`hold_folder_lock`) now: a run or study still
    writing it. Takes nothing: the lock is tried and given straight back."""
    import fcntl

    path = Path(directory) / ".lock"
    if not path.is_file() or Path(directory).resolve() in _HELD_LOCKS:
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def release_all_folder_locks() -> None:
    """Give up every folder lock this process holds."""
    for directory in list(_HELD_LOCKS):
        release_folder_lock(directory)


atexit.register(release_all_folder_locks)


def release_folder_lock(directory: str | os.PathLike) -> None:
    """Give up :func:`hold_folder_lock`'s lock on ``directory`` (nothing if this process does not hold it)."""
    import fcntl

    handle = _HELD_LOCKS.pop(Path(directory).resolve(), None)
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
