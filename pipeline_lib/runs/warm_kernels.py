"""Warm kernels: kernels that `workbench up` keeps started, with the notebooks' imports done, each
taken by exactly one run (of `up`'s scheduler, or typed in a shell with the same settings) in
place of one it would start and wait for. At 20,000 students the kernels' start and imports were
about a third of the CPU of `workbench run all`; a warm kernel did them before the run began.

The keeper (`warm_kernel_keeper`, a service of `workbench up`) writes one file per kernel into
`<data dir>/warm-kernels/ready/`: the kernel's process, its connection file and the environment
it started with. A run takes one by locking its file and moving it into `taken/` (`claim`): the
lock makes the taking exclusive, and it is held until the run is done with the kernel, or until
the run's process ends however it ends; an unlocked file in `taken/` tells the keeper to stop
that kernel, remove its files and start another.

A run takes a kernel only if what a process reads as it starts could not differ: the kernel runs
this interpreter, and every environment variable but those a run sets for its notebook and those
that only describe a terminal is the run's (a cron line's bare environment finds none, and the run
starts its own kernel as before). Taking it, the run sets its own environment, folder and
settings in the kernel, and checks that no module the kernel imported changed on disk since the
kernel started (an analyst edited `pipeline_lib`, or the venv was updated): a stale kernel is
stopped and the run starts its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline_lib.parent_watch import process_start
from pipeline_lib.settings import Settings

FOLDER = "warm-kernels"
# Set per use by whoever takes a kernel: the lease's fence, the snapshot flag, Voila's preheating.
PER_USE = frozenset({"WORKBENCH_RUN_FENCE", "WORKBENCH_DASHBOARD_SNAPSHOT", "VOILA_PREHEAT"})
# Describe the terminal or login a command was typed in, or the `make` that started it (`make run`
# starts `workbench up`); nothing a kernel reads.
TERMINAL = frozenset({
    "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR",
    "_", "PWD", "OLDPWD", "SHLVL", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM",
    "COLUMNS", "LINES", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "DISPLAY",
    "WINDOWID", "LS_COLORS", "TMUX", "TMUX_PANE", "STY", "MAIL", "PS1", "HISTFILE", "HISTSIZE",
    "INVOCATION_ID", "JOURNAL_STREAM", "XDG_SESSION_ID", "XDG_SESSION_TYPE", "XDG_SESSION_CLASS",
})  # fmt: skip


_running: list[int] = []  # this process's hold on the `running` file (`mark_running`)


def mark_running(settings: Settings) -> None:
    """Mark this process as running notebooks until it exits: the keeper starts no kernel while any
    such process lives (a kernel's start and imports, about 2 CPU seconds, would slow the run)."""
    if settings.warm_kernels == 0 or _running:
        return
    try:
        folder = settings.data_dir / FOLDER
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        held = os.open(folder / "running", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(held, fcntl.LOCK_SH)  # shared by every run; the keeper's test holds it for no time
    except OSError:
        return  # never a reason for a run to fail
    _running.append(held)


def runs_running(settings: Settings) -> bool:
    """Whether a process marked itself as running notebooks (`mark_running`) and still lives."""
    try:
        held = os.open(settings.data_dir / FOLDER / "running", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(held)
    return False


def ready_dir(settings: Settings) -> Path:
    return settings.data_dir / FOLDER / "ready"


def taken_dir(settings: Settings) -> Path:
    return settings.data_dir / FOLDER / "taken"


def compatible(started_with: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """Whether a kernel started with `started_with` can serve a run whose environment is `env`."""
    ignored = PER_USE | TERMINAL

    def relevant(environ: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in environ.items() if k not in ignored}

    return relevant(started_with) == relevant(env)


def claim(settings: Settings, env: Mapping[str, str]) -> Claim | None:
    """A ready warm kernel this run can use, now its own (locked and moved to `taken/`), or None."""
    if settings.warm_kernels == 0:
        return None
    try:
        waiting = sorted(ready_dir(settings).iterdir())
    except OSError:
        return None
    for path in waiting:
        try:
            held = _lock_alone(path)
        except OSError:
            continue  # taken meanwhile, or being taken
        try:
            info = json.loads(os.read(held, 1 << 20))
            usable = (
                info["python"] == sys.executable
                and process_start(info["pid"]) == info["process_start"]
                and compatible(info["env"], env)
            )
            if usable:
                taken = taken_dir(settings) / path.name
                os.rename(path, taken)
                return Claim(info, taken, held)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        os.close(held)
    return None


def _lock_alone(path: Path) -> int:
    """`path` opened and locked for this process alone (BlockingIOError if another holds it)."""
    held = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(held)
        raise
    return held


@contextlib.contextmanager
def held_alone(path: Path) -> Iterator[bool]:
    """Inside, `path` locked for this process alone if it can be (`_lock_alone`): True; False, and
    nothing held, if another process holds it or it is gone."""
    try:
        held = _lock_alone(path)
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        os.close(held)


class Claim:
    """A taken warm kernel's file, locked until `release` (or this process's end)."""

    def __init__(self, info: dict[str, Any], path: Path, held: int) -> None:
        self.info = info
        self.path = path
        self._held: int | None = held

    def give_back(self) -> bool:
        """Make the kernel ready again (nothing of this run reached it); False if that failed."""
        if self._held is None:
            return False
        try:
            os.rename(self.path, self.path.parent.parent / "ready" / self.path.name)
        except OSError:
            return False
        self.release()
        return True

    def release(self) -> None:
        """Tell the keeper this run is done with the kernel (it stops it if it still runs)."""
        if self._held is not None:
            os.close(self._held)
            self._held = None


def kill(pid: int, started: int) -> None:
    """Kill process `pid` and its process group, if it is still the process that started then."""
    if process_start(pid) != started:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)  # with what it started (a Spark JVM)
        else:
            os.kill(pid, signal.SIGKILL)


def staleness_code(since: float) -> str:
    """Raises in the kernel if a module it imported changed on disk after `since` (epoch seconds)."""
    return (
        "def _workbench_check_fresh(since):\n"
        "    import os, sys\n"
        "    for module in list(sys.modules.values()):\n"
        "        path = getattr(module, '__file__', None)\n"
        "        if not path:\n"
        "            continue\n"
        "        try:\n"
        "            changed = os.stat(path).st_mtime > since\n"
        "        except OSError:\n"
        "            changed = True\n"
        "        if changed:\n"
        "            raise RuntimeError(f'{path} changed since the warm kernel started')\n"
        f"_workbench_check_fresh({since!r})\n"
        "del _workbench_check_fresh\n"
    )


def settings_reset_code(folder: Path) -> str:
    """Moves the kernel into `folder` and makes it read the settings again (from its new environment)."""
    return (
        "import os as _workbench_os, sys as _workbench_sys\n"
        f"_workbench_os.chdir({str(folder)!r})\n"
        "if 'pipeline_lib.settings' in _workbench_sys.modules:\n"
        "    _workbench_sys.modules['pipeline_lib.settings'].get_settings.cache_clear()\n"
        "del _workbench_os, _workbench_sys\n"
    )
