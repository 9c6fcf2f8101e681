"""The one error type of bad atomistic input, with where it came from.

A ``DatasetError`` says which file, which frame (0-based, in file order) and which key (the name
in the file, e.g. ``REF_forces``) is wrong, and what is wrong with it, so a user can open the file
and find the line. It is a ``ValueError``, so callers that catch bad values keep working.
"""

from __future__ import annotations

from os import PathLike


class DatasetError(ValueError):
    """Bad input data: ``"<file>, frame <n>, key '<key>': <problem>"``.

    ``file``, ``frame`` and ``key`` are kept as attributes (``None`` when they do not apply, e.g. a
    missing file has no frame).
    """

    def __init__(self, problem: str, *, file: str | PathLike | None = None, frame: int | None = None,
                 key: str | None = None):
        self.problem = problem
        self.file = None if file is None else str(file)
        self.frame = frame
        self.key = key
        where = []
        if self.file is not None:
            where.append(self.file)
        if frame is not None:
            where.append(f"frame {frame}")
        if key is not None:
            where.append(f"key {key!r}")
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)
