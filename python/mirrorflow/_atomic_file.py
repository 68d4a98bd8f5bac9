"""Files written whole or not at all, for the experiments and benchmarks.

A run that dies while writing must not leave half a file where a finished result
was (a cut JSON would also stop the run from resuming): the content goes into a
file beside the target, which is then renamed over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Calls ``write(partial)`` on a new file beside ``path``, then renames it
    over ``path``, which so holds its old content or the new one, never part of
    one. When ``write`` raises (or the run is interrupted) the partial file is
    removed and ``path`` is left as it was."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        write(partial)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``text`` into ``path`` through :func:`write_atomic`."""
    write_atomic(path, lambda p: p.write_text(text))
