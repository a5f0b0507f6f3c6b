"""The recorder's write-ahead journal: every write meant for MLflow is appended here (one JSON line, flushed and
fsynced) before it is sent, so that neither a killed driver nor a tracking store that is away loses a point.

An operation names its trial by key, not by run id (the run may not exist yet while the store is away), and
carries everything it writes, timestamps included, so that applying it twice leaves the store as applying it
once: MLflow's SQL stores keep one row per identical metric point (key, value, timestamp, step), tags and params
are set to the same values, and a finish or a fail is skipped on a run that already ended. The next `sweeps run`
replays what an earlier driver left (`leftovers`) before it plans anything; a driver that got everything into the
store removes its own journal when it ends.

One file per driver: `<journal dir>/<start time>-<pid>.jsonl`. No MLflow, no Ray here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

Op = dict[str, Any]
"""One journaled write: {"op": name, "key": trial key, ...}; see sweeps.tracking.Writer.apply for the names."""


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        self._file: TextIO | None = None
        self.written = 0

    def append(self, ops: list[Op]) -> None:
        """Write the ops and make them durable (fsync) before returning."""
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write("".join(json.dumps(op, separators=(",", ":")) + "\n" for op in ops))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.written += len(ops)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Everything journaled is in the store: remove the file."""
        self.close()
        self.path.unlink(missing_ok=True)


def leftovers(directory: Path, exclude: Path | None = None) -> list[Path]:
    """Journals that earlier drivers left, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.jsonl") if p != exclude)


def read(path: Path) -> list[Op]:
    """The ops of a journal. A last line cut off by a crash mid-write was never sent (ops are sent only after
    they are durable), so it is dropped; damage anywhere else is an error naming the line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    ops = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            ops.append(json.loads(line))
        except json.JSONDecodeError:
            if number >= len(lines) - 1:  # the torn tail
                break
            raise ValueError(f"{path}: line {number} is not a journal entry; move the file aside to go on") from None
    return ops
