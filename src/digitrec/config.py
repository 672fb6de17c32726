"""Every setting in one table: its environment variable, the CLI flag that overrides it, its
default and what it does. `read()` parses the environment against the table once per entry
point (CLI, web app, gunicorn config), with a ConfigError naming the variable for a bad value;
`markdown_table()` is the table in the README. Imports nothing of digitrec but its errors."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from digitrec.errors import ConfigError

BACKEND_NAMES = ("onnx", "int8", "torch")


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must lie in 0..65535")
    return value


def _switch(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def _db_url(text: str) -> str:
    if "://" not in text:
        raise ValueError("must be a database URL: sqlite:///PATH or "
                         "postgresql+psycopg://USER@HOST/DATABASE")
    return text.strip()


def _backend(text: str) -> str | None:
    lowered = text.strip().lower()
    if lowered and lowered not in BACKEND_NAMES:
        raise ValueError(f"must be one of {', '.join(BACKEND_NAMES)}")
    return lowered or None


@dataclass(frozen=True)
class Setting:
    """One row of the table."""

    name: str  # attribute of Settings
    env: str
    flag: str | None  # the CLI flag that overrides it, if any
    default: Any
    parse: Callable[[str], Any]
    doc: str
    shown_default: str = ""  # the default as the README shows it, when not `default`


TABLE: tuple[Setting, ...] = (
    Setting("data_dir", "DIGITREC_DATA", "--data-dir", None, _path,
            "MNIST directory for training, evaluation and benchmarks",
            "~/.cache/digitrec/mnist"),
    Setting("weights", "DIGITREC_WEIGHTS", "--weights", None, _path,
            "directory of models (*.safetensors + cards) to load", "the bundled ensemble"),
    Setting("inference", "DIGITREC_INFERENCE", "--inference", None, _backend,
            "inference backend: onnx, int8 or torch",
            "int8 when the weights carry int8.json, else onnx"),
    Setting("home", "DIGITREC_HOME", None, None, _path,
            "where `calibrate` and `quantize` write when not given --out",
            "$XDG_DATA_HOME/digitrec, else ~/.local/share/digitrec"),
    Setting("cache_dir", "DIGITREC_CACHE", None, None, _path,
            "cache of exported ONNX graphs", "$XDG_CACHE_HOME/digitrec, else ~/.cache/digitrec"),
    Setting("torch_threads", "DIGITREC_TORCH_THREADS", "--torch-threads", None, _positive,
            "threads torch and onnxruntime use for one model call",
            "torch's default; in the server, cores / workers"),
    Setting("host", "DIGITREC_HOST", "--host", "127.0.0.1", str, "address `serve` listens on"),
    Setting("port", "DIGITREC_PORT", "--port", 8000, _port, "port `serve` listens on"),
    Setting("workers", "DIGITREC_WORKERS", "--workers", None, _positive,
            "gunicorn worker processes of `serve`", "one per core, at most 4"),
    Setting("worker_threads", "DIGITREC_WORKER_THREADS", "--worker-threads", 1, _positive,
            "request threads per gunicorn worker (1: sync workers; more: gthread)"),
    Setting("worker_connections", "DIGITREC_WORKER_CONNECTIONS", None, None, _positive,
            "connections a gthread worker takes at once", "2 x worker threads"),
    Setting("micro_batch", "DIGITREC_MICRO_BATCH", None, True, _switch,
            "concurrent requests in one worker share model batches (1/0)", "1"),
    Setting("screenshot", "DIGITREC_SCREENSHOT", None, None, _path,
            "tests only: where the browser test saves its screenshot", "a temporary file"),
    Setting("fault_step", "DIGITREC_FAULT_STEP", None, 0, _whole,
            "tests only: a training rank dies after this step, on the job's first attempt",
            "0 (never)"),
    Setting("fault_rank", "DIGITREC_FAULT_RANK", None, 1, _whole,
            "tests only: the rank DIGITREC_FAULT_STEP kills"),
    Setting("fuzz_examples", "DIGITREC_FUZZ_EXAMPLES", None, 300, _positive,
            "tests only: hypothesis examples per fuzz test (tests/corpus/test_fuzz.py)"),
    Setting("db_url", "DIGITREC_DB_URL", "--db", None, _db_url,
            "database of corrections (SQLAlchemy URL: sqlite:///PATH, postgresql+psycopg://...)",
            "$DIGITREC_HOME/feedback.sqlite3"),
)


@dataclass(frozen=True)
class Settings:
    """The parsed table (one attribute per row)."""

    data_dir: Path | None
    weights: Path | None
    inference: str | None
    home: Path | None
    cache_dir: Path | None
    torch_threads: int | None
    host: str
    port: int
    workers: int | None
    worker_threads: int
    worker_connections: int | None
    micro_batch: bool
    screenshot: Path | None
    fault_step: int
    fault_rank: int
    fuzz_examples: int
    db_url: str | None

    def data_home(self) -> Path:
        """Where commands write files by default (never into the installed package)."""
        if self.home:
            return self.home
        base = os.environ.get("XDG_DATA_HOME", "")
        return (Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share") / \
            "digitrec"

    def cache_home(self) -> Path:
        """Where derived files (exported graphs) are cached."""
        if self.cache_dir:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME", "")
        return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "digitrec"


def read(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment (os.environ by default); ConfigError, naming the
    variable, for a value that does not parse."""
    environ = os.environ if environ is None else environ
    values = {}
    for setting in TABLE:
        text = environ.get(setting.env, "")
        if text == "":
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(text)
        except ValueError as exc:
            reason = str(exc) if "invalid literal" not in str(exc) else "must be a whole number"
            raise ConfigError(f"${setting.env}={text!r}: {reason}") from None
    return Settings(**values)


def markdown_table() -> str:
    """The table as Markdown (the README's settings section is this text)."""
    rows = ["| variable | flag | default | what |", "|---|---|---|---|"]
    for s in TABLE:
        default = s.shown_default or str(s.default)
        rows.append(f"| `{s.env}` | {f'`{s.flag}`' if s.flag else '–'} | {default} | {s.doc} |")
    return "\n".join(rows)


assert [f.name for f in fields(Settings)] == [s.name for s in TABLE]  # one row per attribute
