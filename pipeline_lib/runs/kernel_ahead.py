"""A notebook's kernel started before its run, importing the modules that notebook imports on the
other core while the notebooks before it run. In a sequence (`workbench run all`) the second
notebook's kernel starts with the first one's, and each later one as the notebook two before it
starts; a run then begins with its kernel up and its imports done (at 20,000 students the process
notebook's imports alone take about 2 s, longer than the clean). `workbench run` also starts the
first notebook's kernel before it imports its own runner, and the dashboard snapshots' kernel as
the last notebook starts.

Nothing else runs ahead: the notebook's own cells run in its run, under its lease. The kernel is
started with the run's environment except what only the run knows (the lease's fence), which is
set in the kernel when the run takes it (`take`). A kernel that died or does not answer is
discarded, and the run starts its own as it would have.

After its run the kernel is asked to stop and left to exit while the next step goes on: a kernel
that imported the process notebook's libraries took about 0.8 s to tear its interpreter down, and
still takes about 0.2 s with its heap frozen at exit (`quick_exit`).
A thread waits for it (killing it if it does not exit in time) and removes its files;
`wait_for_shut_down` waits for those threads, and the interpreter waits for them at exit too.
A kernel that only read (the snapshots') or that no run took is killed at once instead.
"""

from __future__ import annotations

import ast
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_core.utils import ensure_event_loop, run_sync

from pipeline_lib.runs.kernel import LocalKernelManager, ensure_kernel
from pipeline_lib.settings import Settings, child_environment

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 120.0  # for the imports run ahead and the environment update

_stopping: list[threading.Thread] = []  # one per kernel asked to stop, until it is gone
_stopping_lock = threading.Lock()


def start_ahead(path: Path, settings: Settings) -> KernelAhead | None:
    """`path`'s kernel: a warm one `workbench up` keeps (`warm_kernels`) if one can serve this run,
    else one started now to import before its run; None if it cannot start (the run then starts
    its own, and says why if it cannot either)."""
    from pipeline_lib.runs.adopted_kernel import take_warm

    env = child_environment(settings)
    warm = take_warm(path, settings, env)
    if warm is not None:
        return warm
    try:
        return KernelAhead(path, env)
    except Exception as exc:  # never a reason for a run to fail
        log.warning("could not start the kernel of %s ahead: %s", path.name, exc)
        return None


def wait_for_shut_down() -> None:
    """Wait until every kernel asked to stop is gone (each thread ends within the manager's
    `shutdown_wait_time`, killing its kernel if need be)."""
    with _stopping_lock:
        threads, _stopping[:] = list(_stopping), []
    for thread in threads:
        thread.join()


def module_imports(path: Path) -> list[str]:
    """The modules a notebook imports at the top level of its code cells, in order (a cell that
    does not parse, IPython's magics for instance, gives none; relative imports are left out).
    `from a import b` gives `a` and `a.b`, as `b` may be a module that importing `a` leaves out."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return []
    found: dict[str, None] = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                found.update((alias.name, None) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found[node.module] = None
                names = (alias.name for alias in node.names if alias.name != "*")
                found.update((f"{node.module}.{name}", None) for name in names)
    return list(found)


def warm_up_code(modules: list[str], *, declared: bool = False) -> str:
    """Imports the modules without binding a name in the notebook's namespace; one that fails (or
    names no module) is left for the notebook's own import to report. With `declared`, also the
    modules each one names in its `WARM_IMPORTS`: what it imports only when its functions run
    (`pipeline_lib.process.run`'s models), imported ahead by a warm kernel, which waits for no run.

    Then the heap is frozen (`gc.freeze`): what the imports made lives as long as the kernel, and
    the cyclic collector's full collections during the run no longer walk it. The process notebook's
    cells as a script after these imports: its full collections took 0.16-0.46 s per run, frozen
    0.006-0.05 s; `workbench run all` on the 20,000-student demo, six alternating pairs of fresh
    systems: process run 3.6 s against 3.9 s (medians), run all 6.1 s against 6.5 s."""
    return (
        "def _workbench_import_ahead(names, declared):\n"
        "    import gc, importlib\n"
        "    for name in names:\n"
        "        try:\n"
        "            module = importlib.import_module(name)\n"
        "            for more in getattr(module, 'WARM_IMPORTS', ()) if declared else ():\n"
        "                importlib.import_module(more)\n"
        "        except Exception:\n"
        "            pass\n"
        "    gc.collect()\n"
        "    gc.freeze()\n"
        f"_workbench_import_ahead({modules!r}, {declared!r})\n"
        "del _workbench_import_ahead\n"
    )


def environment_code(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """Makes a kernel started with `before` see `after` as its environment (and what it starts)."""
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    gone = sorted(set(before) - set(after))
    return (
        "import os as _workbench_os\n"
        f"_workbench_os.environ.update({changed!r})\n"
        f"for _workbench_name in {gone!r}:\n"
        "    _workbench_os.environ.pop(_workbench_name, None)\n"
        "del _workbench_os\n"
    )


class _AheadKernelManager(LocalKernelManager):
    """Remembers the clients it hands out: papermill leaves its client's channels open on a kernel
    it did not start, so they are stopped with the kernel (`KernelAhead.shut_down`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handed_out: list[Any] = []

    def client(self, **kwargs: Any) -> Any:
        made = super().client(**kwargs)
        self.handed_out.append(made)
        return made


class KernelAhead:
    """The kernel of `path`'s next run, started now with `env` in the notebook's folder, importing
    the modules of `path` (or of every notebook in `imports_of`, for a kernel that runs several),
    with `declared` also those they declare (`warm_up_code`)."""

    _client: BlockingKernelClient | None
    _pending: list[str]  # the ids of the requests it sent, the imports' first

    def __init__(
        self, path: Path, env: Mapping[str, str], *, imports_of: Sequence[Path] = (), declared: bool = False
    ) -> None:
        manager = _AheadKernelManager(kernel_name=ensure_kernel())
        run_sync(manager.start_kernel)(cwd=str(path.parent), env=dict(env))
        self._attach(path, env, manager)
        try:
            assert self._client is not None
            # Queued now; the kernel runs it as soon as it is up, while the previous notebook runs.
            modules = dict.fromkeys(name for each in imports_of or [path] for name in module_imports(each))
            code = warm_up_code(list(modules), declared=declared)
            self._pending = [self._client.execute(code, silent=True)]
        except BaseException:
            self.shut_down()
            raise

    def _attach(self, path: Path, env: Mapping[str, str], manager: _AheadKernelManager) -> None:
        """Its state, and a client of `manager`'s running kernel; the kernel is shut down if the
        client cannot start."""
        self.path = path
        self.env = dict(env)
        self._down = False
        self._taken = False  # a run took it (it may then hold the run's state to finish)
        self.manager = manager
        self._client = None
        self._pending = []
        try:
            self._client = manager.blocking_client()
            self._client.start_channels(hb=False)  # the manager watches the process; no heartbeat thread
        except BaseException:
            KernelAhead.shut_down(self)  # not a subclass's: nothing was handed over yet
            raise

    def _reply(self, client: BlockingKernelClient, timeout: float, gone: str) -> dict[str, Any] | None:
        """The kernel's next reply, waiting up to `timeout` seconds; None if none came, and
        RuntimeError(`gone`) if the kernel stopped."""
        try:
            reply: dict[str, Any] = client.get_shell_msg(timeout=timeout)
        except queue.Empty:
            if not run_sync(self.manager.is_alive)():
                raise RuntimeError(gone) from None
            return None
        return reply

    def imported(self, timeout: float) -> bool:
        """Whether the imports queued at its start are done, waiting up to `timeout` seconds for
        them; RuntimeError if the kernel stopped."""
        if self._client is None:
            raise RuntimeError("the kernel is no longer reachable from here")
        reply = self._reply(self._client, timeout, "the kernel stopped while importing")
        return reply is not None and reply.get("parent_header", {}).get("msg_id") == self._pending[0]

    def release_client(self) -> None:
        """Close this process's connection to the kernel (another process will use it)."""
        if self._client is not None:
            self._client.stop_channels()
            self._client = None

    def take(self, env: Mapping[str, str]) -> _AheadKernelManager | None:
        """The kernel for its run, with the run's environment `env` and the imports done; None
        (the kernel shut down) if it died or did not answer in time."""
        client, self._client = self._client, None
        if client is None:
            return None
        try:
            if not run_sync(self.manager.is_alive)():
                raise RuntimeError("the kernel started ahead is gone")
            self._pending.append(client.execute(self._take_code(env), silent=True))
            self._wait_for_replies(client)
        except (RuntimeError, TimeoutError) as exc:
            log.warning("kernel started ahead for %s not used: %s", self.path.name, exc)
            self.shut_down()
            return None
        finally:  # also when the run is interrupted meanwhile
            client.stop_channels()
        self._taken = True
        return self.manager

    def _take_code(self, env: Mapping[str, str]) -> str:
        """What the kernel runs as its run takes it (an error: the kernel is not used)."""
        return environment_code(self.env, env)

    def _wait_for_replies(self, client: BlockingKernelClient) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        waiting = set(self._pending)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer in {READY_TIMEOUT_SECONDS:.0f} s")
            reply = self._reply(client, min(left, 1.0), "the kernel started ahead stopped")
            if reply is None:
                continue
            answered = reply.get("parent_header", {}).get("msg_id")
            waiting.discard(answered)
            if answered == self._pending[-1] and reply["content"].get("status") != "ok":
                raise RuntimeError(f"preparing it for the run failed: {reply['content'].get('evalue')}")

    def shut_down(self, *, now: bool = False) -> None:
        """Stop the kernel (not taken, or after its run) without waiting for it to exit: a thread
        asks it first, as nbclient does, kills it if it has not exited in time (the manager's
        `shutdown_wait_time`), and removes its files; with `now`, kills it at once (for a kernel
        whose work is all delivered: its interpreter's teardown is skipped). A kernel no run took
        is killed at once too: it only imported, and asked to stop in the middle of an import it
        printed a traceback into the command's output (the import's reply, on its closed socket).
        Not waited for: `wait_for_shut_down`."""
        now = now or not self._taken
        if self._client is not None:
            self._client.stop_channels()
            self._client = None
        if self._down:
            return
        self._down = True
        for client in self.manager.handed_out:
            client.stop_channels()
        # Not a daemon: the interpreter waits for it at exit, so no kernel outlives the command.
        thread = threading.Thread(target=self._stop, args=(now,), name=f"stop kernel of {self.path.name}")
        with _stopping_lock:
            _stopping.append(thread)
        thread.start()

    def _stop(self, now: bool) -> None:
        try:
            self._stop_kernel(now)
        finally:
            _close_thread_loop()

    def _stop_kernel(self, now: bool) -> None:
        try:
            if run_sync(self.manager.is_alive)():
                run_sync(self.manager.shutdown_kernel)(now=now)  # also removes its files
                return
        except RuntimeError:  # "No kernel is running!": already gone
            pass
        except Exception:  # in a thread: logged, else it would reach only stderr
            log.exception("stopping the kernel of %s failed", self.path.name)
            return
        run_sync(self.manager.cleanup_resources)()


def _close_thread_loop() -> None:
    """Close the event loop `run_sync` made for this thread. Left to the garbage collector (it sits
    in a reference cycle), it may be finalised at the interpreter's exit after its self-pipe socket,
    and `BaseEventLoop.__del__` prints a traceback into the command's output (CI saw one)."""
    loop = ensure_event_loop()
    if not loop.is_running():
        loop.close()
