"""Structured logging: one line per event, with the event's fields as key=value pairs; and the log
files of `<data dir>/logs/`, where services, Spark and scheduled runs write what is not for the
user's terminal."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO


def configure_logging(level: str = "INFO") -> None:
    """Route stdlib and structlog records through one renderer; `extra=` fields are kept."""
    # Imported here: a kernel that only needs the log files below does without it (0.06 s).
    import structlog

    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if sys.stderr.isatty()
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "logger", "event"])
    )
    shared = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def log_dir(data_dir: Path) -> Path:
    """`<data dir>/logs/`, made if missing."""
    folder = data_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_log(path: Path, heading: str) -> tuple[BinaryIO, int]:
    """`path` opened to append (for a child process's stderr), after a line that says who writes
    from here on; returns the stream and the offset where this writer's lines start."""
    stream = path.open("ab")
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stream.write(f"==== {stamp} {heading}\n".encode())
    stream.flush()
    return stream, stream.tell()


def tail(path: Path, start: int = 0, lines: int = 15, width: int = 300) -> list[str]:
    """The last `lines` lines of `path` after offset `start` (each cut to `width` characters)."""
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(start, size - 64 * 1024))
            text = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in kept]
