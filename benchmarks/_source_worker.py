"""A benchmark's worker process that imports digitrec from a given `src` folder (this tree's, or
an older copy's) and answers commands as JSON lines: how `--against OLD_SRC` runs old and new
code side by side. The worker's first line names where it imported digitrec from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


class SourceWorker:
    """`python SCRIPT ARGS...` with PYTHONPATH=source (and `env`), checked to run that code."""

    def __init__(self, name: str, source: Path, argv: list[str],
                 env: dict[str, str] | None = None, one_core: bool = False):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(source), **(env or {})), text=True)
        if one_core and hasattr(os, "sched_setaffinity"):  # both sides: the same neighbours
            os.sched_setaffinity(self.process.pid, {min(os.sched_getaffinity(0))})
        self.hello = self._reply()
        if Path(self.hello["source"]).resolve() != source.resolve():
            sys.exit(f"the {name} worker imported digitrec from {self.hello['source']}, "
                     f"not {source}")

    def _reply(self) -> Any:
        """The next JSON line from the worker."""
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"the {self.name} worker died")
        return json.loads(line)

    def ask(self, command: str) -> Any:
        """Send a command, wait for its reply."""
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        """Stop the worker."""
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)
