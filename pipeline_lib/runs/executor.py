"""`workbench run NAME`: execute a notebook with papermill under a new run id, single flight.

One run = a lease on `run:<notebook>`, a run record written at the start and at the end, the
output notebook archived under `<runs dir>/YYYY/MM/DD/<run_id>-<notebook>.ipynb` (written as each
code cell starts, and after a failed or the last cell, so a running or crashed run can be read;
`runs/papermill_engine.py`), and a status judged from what papermill
raised. A second run of the same notebook while one holds the lease is recorded as `skipped`.
The notebook gets the lease's fence in WORKBENCH_RUN_FENCE, so its clients' CommitClean and
PutDocument calls are refused once the run has lost the lease; losing it also stops the run.

A notebook's own defaults are for an analyst running it by hand; a run does the work, so it passes
RUN_DEFAULTS (`dry_run=False`: the clean notebook commits) unless its `-p` values say otherwise.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RUNS
from pipeline_lib.runs import alerts, records
from pipeline_lib.runs import parameters as parameters_cell
from pipeline_lib.runs.kernel import ensure_kernel
from pipeline_lib.runs.lease import LeaseKeeper
from pipeline_lib.runs.notebook_counts import counts_from_notebook
from pipeline_lib.runs.notebooks import notebook_path
from pipeline_lib.runs.outcome import Interrupted, judge
from pipeline_lib.runs.records import RunError, RunRecord
from pipeline_lib.settings import Settings, child_environment
from pipeline_lib.wire.requests import FENCE_ENV

if TYPE_CHECKING:
    from pipeline_lib.runs.kernel_ahead import KernelAhead

log = logging.getLogger(__name__)

# How often a waiting run asks for the lease again.
WAIT_POLL_SECONDS = 2.0
# A notebook cell after which the notebook writes nothing more (it shows what it wrote).
RESULTS_WRITTEN_TAG = "results-written"


# What a run passes to a notebook that declares the parameter, unless the caller gave a value:
# the clean notebook defaults to a dry run, so running it top to bottom by hand commits nothing.
RUN_DEFAULTS: Mapping[str, Any] = {"dry_run": False}


def declared_parameters(path: Path) -> set[str]:
    """The names assigned in the notebook's cell tagged `parameters` (none if it has no such cell,
    or one that does not parse: its run then fails saying why)."""
    try:
        return set(parameters_cell.read_notebook(path))
    except parameters_cell.ParametersCellError:
        return set()


def with_run_defaults(declared: Mapping[str, object], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """`parameters` with the RUN_DEFAULTS the notebook declares and the caller did not give."""
    return {**{k: v for k, v in RUN_DEFAULTS.items() if k in declared}, **parameters}


def archive_path(settings: Settings, record: RunRecord) -> Path:
    day = record.started_at
    return (
        settings.run_archive
        / f"{day:%Y}"
        / f"{day:%m}"
        / f"{day:%d}"
        / f"{record.run_id}-{record.notebook}.ipynb"
    )


def execute(
    name: str,
    parameters: Mapping[str, Any],
    settings: Settings,
    client: DbApiClient,
    *,
    triggered_by: str = "cli",
    echo: Callable[[str], None] = print,
    wait: bool = False,
    after_run_id: str | None = None,
    kernel: KernelAhead | None = None,
    on_results: Callable[[str], object] | None = None,
) -> RunRecord:
    """Run one notebook to the end and return its final record (also stored in `runs`).

    While another run of it holds the lease, this run is skipped, or with `wait` waits for it.
    `after_run_id`: the run whose success started this one (recorded, shown in the run history).
    `kernel`: this notebook's kernel, started ahead; the run uses it if it can, and shuts it down.
    `on_results`: called with the run id once the notebook's cell tagged `results-written` ran
    without error (what follows it only shows what was written)."""
    try:
        path = notebook_path(settings, name)
        started = records.now()
        record = RunRecord(
            run_id=records.new_run_id(name, started),
            notebook=name,
            parameters=dict(parameters),
            started_at=started,
            code_version=records.code_version(),
            host=records.host_name(),
            triggered_by=triggered_by,
            after_run_id=after_run_id,
        )
        return _execute(
            path, record, parameters, settings, client,
            echo=echo, wait=wait, kernel=kernel, on_results=on_results,
        )  # fmt: skip
    finally:
        if kernel is not None:
            kernel.shut_down()


def _execute(
    path: Path,
    record: RunRecord,
    parameters: Mapping[str, Any],
    settings: Settings,
    client: DbApiClient,
    *,
    echo: Callable[[str], None],
    wait: bool,
    kernel: KernelAhead | None,
    on_results: Callable[[str], object] | None = None,
) -> RunRecord:
    name, run_id = record.notebook, record.run_id
    try:
        # Also checked by `workbench run` before it connects; here for every other caller.
        declared = parameters_cell.read_notebook(path)
        parameters = parameters_cell.validate(name, declared, with_run_defaults(declared, parameters))
    except parameters_cell.ParameterError as refused:
        record.finish("failed", error=RunError(exception=type(refused).__name__, message=str(refused)))
        records.save(client, record)
        return record
    record.parameters = dict(parameters)  # as the notebook gets them (an int for a float is a float)

    holder = f"{record.host}:{os.getpid()}:{run_id}"
    stopper = _Stopper()
    lease_name, ttl = f"run:{name}", settings.run_lease_seconds
    with LeaseKeeper(client, lease_name, holder, ttl, on_lost=stopper.stop) as lease:
        if not _acquire(lease, name, wait=wait, echo=echo):
            record.finish("skipped")
            record.note = f"another run of {name} holds the lease ({lease.held_by})"
            records.save(client, record)
            return record
        _close_abandoned(client, name, run_id, settings)
        output = archive_path(settings, record)
        output.parent.mkdir(parents=True, exist_ok=True)
        record.output_path = str(output.resolve())
        records.save(client, record)
        echo(f"run {run_id}: executing {path.name} -> {output}")
        # The kernel and Spark inherit it; the notebook's clients attach the fence to their writes.
        with _environment({**child_environment(settings), FENCE_ENV: str(lease.fence)}):
            exc = _papermill(
                path, output, {**parameters, "run_id": run_id}, settings, stopper, kernel, on_results
            )
        notebook = _read(output)
        record.counts = counts_from_notebook(notebook) if notebook else {}
        status, error = judge(exc, notebook)
        record.finish(status, error=error)
        records.save(client, record)
    if alerts.should_announce(record):
        alerts.announce(record, settings)
    return record


def _acquire(lease: LeaseKeeper, name: str, *, wait: bool, echo: Callable[[str], None]) -> bool:
    """Take the run's lease; with `wait`, poll until the run holding it ends (Ctrl-C gives up)."""
    if lease.acquire():
        return True
    if not wait:
        return False
    echo(f"waiting for the run of {name} in progress ({lease.held_by}) to finish; Ctrl-C stops waiting")
    try:
        while not lease.acquire():
            time.sleep(WAIT_POLL_SECONDS)
    except KeyboardInterrupt:
        return False
    return True


def _papermill(
    path: Path,
    output: Path,
    parameters: dict[str, Any],
    settings: Settings,
    stopper: _Stopper,
    kernel: KernelAhead | None = None,
    on_results: Callable[[str], object] | None = None,
) -> BaseException | None:
    import papermill

    from pipeline_lib.runs import papermill_engine

    papermill_log = logging.getLogger("papermill")
    papermill_log.setLevel(logging.WARNING)
    papermill_log.addFilter(_not_unknown_parameter)  # added once: a filter already there is kept
    hooks: dict[str, Any] = {}
    if on_results is not None:
        hooks["on_cell_executed"] = _results_hook(on_results, parameters["run_id"])
    try:
        with stopper.armed():
            # The kernel started ahead, given this run's environment (its fence); else papermill
            # starts one, which inherits the environment.
            started = kernel.take(os.environ) if kernel is not None else None
            papermill.execute_notebook(
                str(path),
                str(output),
                parameters=parameters,
                kernel_name=ensure_kernel(),
                kernel_manager_class="pipeline_lib.runs.kernel.LocalKernelManager",  # IPC, not TCP
                language="python",
                engine_name=papermill_engine.registered(),
                execution_timeout=settings.run_cell_timeout_seconds,
                progress_bar=False,
                cwd=str(path.parent),
                **({"km": started} if started is not None else {}),
                **hooks,
            )
    except (Exception, KeyboardInterrupt) as exc:  # every way a run can end is recorded
        return exc
    finally:
        if kernel is not None:
            kernel.shut_down()  # asked inside the lease, as papermill does; it exits meanwhile
    return None


def _results_hook(on_results: Callable[[str], object], run_id: str) -> Callable[..., None]:
    """nbclient's `on_cell_executed`: `on_results(run_id)` once, after the first cell tagged
    `results-written` ran without error. Its failure is logged, never the notebook's."""
    called = False

    def hook(cell: Any, cell_index: int, execute_reply: dict[str, Any] | None) -> None:
        nonlocal called
        if called or RESULTS_WRITTEN_TAG not in cell.get("metadata", {}).get("tags", ()):
            return
        if not execute_reply or execute_reply.get("content", {}).get("status") != "ok":
            return
        called = True
        try:
            on_results(run_id)
        except Exception:
            log.exception("starting what follows the results of %s failed", run_id)

    return hook


def _not_unknown_parameter(record: logging.LogRecord) -> bool:
    """Drops papermill's "Passed unknown parameter": its pattern cannot read a line annotated
    `int | None`, and every parameter was read and checked here already (parameters.py)."""
    return not record.getMessage().startswith("Passed unknown parameter")


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Run with `env` as the process environment (what a kernel started meanwhile inherits)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _Stopper:
    """Ends the run in the main thread with `Interrupted`, recorded as failed: on SIGTERM (cron,
    `workbench up` stopping) instead of being killed unrecorded, and when the lease is lost
    (`stop`, from the lease's thread) instead of running on without it."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._armed = False
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            main = threading.main_thread().ident
            if self._armed and main is not None:
                # A signal, not a flag: it also wakes the main thread from a blocking wait.
                signal.pthread_kill(main, signal.SIGTERM)

    @contextmanager
    def armed(self) -> Iterator[None]:
        """While papermill runs. Off the main thread there are no signals: there the fence still
        refuses the run's next write once the lease is lost."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, _frame: object) -> None:
            if self._armed:
                raise Interrupted(self.reason or f"received {signal.Signals(signum).name}")

        with self._lock:
            if self.reason is not None:
                raise Interrupted(self.reason)
            previous = signal.signal(signal.SIGTERM, on_signal)
            self._armed = True
        try:
            yield
        finally:
            try:
                with self._lock:
                    self._armed = False
            finally:
                signal.signal(signal.SIGTERM, previous)


def _read(output: Path) -> dict[str, Any] | None:
    try:
        return nbformat.read(output, as_version=4)
    except (OSError, ValueError):
        return None


def _close_abandoned(client: DbApiClient, name: str, run_id: str, settings: Settings) -> None:
    """Runs of this notebook still `running` lost their lease, so their process is gone: say so,
    and announce a scheduled one's failure as its own process would have (it was killed first)."""
    stale = client.list_documents(RUNS, [("notebook", "eq", name), ("status", "eq", "running")], limit=1000)
    for document in stale:
        if document.get("run_id") == run_id:
            continue
        old = records.load(document)
        old.finish(
            "failed",
            error=RunError(
                exception="Abandoned",
                message=(
                    "the process running it stopped without finishing (killed, or its machine went "
                    "down), or lost its lease (the db-api out of its reach for longer than the lease)"
                ),
            ),
        )
        records.save(client, old)
        log.warning("abandoned run closed", extra={"run_id": old.run_id, "notebook": name})
        if alerts.should_announce(old):
            alerts.announce(old, settings)


@dataclass(frozen=True)
class NotRun:
    """A notebook of a sequence left out because the run it depends on did not succeed."""

    notebook: str
    reason: str


def execute_all(
    names: tuple[str, ...] | list[str],
    parameters: Mapping[str, Any],
    settings: Settings,
    client: DbApiClient,
    *,
    needs: Mapping[str, str] | None = None,
    after_run_id: str | None = None,
    before_last: Callable[[], object] | None = None,
    last_results: Callable[[str], object] | None = None,
    first: KernelAhead | None = None,
    **kwargs: Any,
) -> list[RunRecord | NotRun]:
    """Run notebooks in order. One named in `needs` (notebook -> the one it depends on) runs only
    if that one ran here and succeeded, and records its run id as `after_run_id`; otherwise it is
    `NotRun`, with why. Without `needs`, each depends on the one before (a skip also stops).

    Each notebook gets the parameters it declares; one that none declares fails the first run.
    `before_last` is called as the last notebook starts (to start what follows it ahead), and
    `last_results` with its run id once it wrote its results (its `results-written` cell ran);
    `first` is the first notebook's kernel if the caller started it already."""
    if needs is None:
        needs = {later: earlier for earlier, later in itertools.pairwise(names)}
    declared = {name: declared_parameters(notebook_path(settings, name)) for name in names}
    known = set().union(*declared.values())
    done: list[RunRecord | NotRun] = []
    ran: dict[str, RunRecord | NotRun] = {}
    # Kernels by the index of their notebook. The first starts with the command (`first`) or now,
    # while the lease is taken and the run recorded, and the second one now as well: it imports while
    # the first imports and runs (at 20,000 students the process notebook's imports outlasted the
    # clean). Each later one starts as the notebook two before it starts to run.
    ahead = {0: _first_kernel(names, settings, first)}
    if len(names) > 1:
        ahead[1] = _kernel_ahead(names[1], settings)
    try:
        for index, name in enumerate(names):
            kernel = ahead.pop(index, None)
            upstream = ran.get(needs[name]) if name in needs else None
            if name in needs and not (isinstance(upstream, RunRecord) and upstream.status == "succeeded"):
                outcome: RunRecord | NotRun = NotRun(name, _why_not(needs[name], upstream))
                if kernel is not None:
                    kernel.shut_down()
            else:
                own = {k: v for k, v in parameters.items() if k in declared[name] or k not in known}
                follows = upstream.run_id if isinstance(upstream, RunRecord) else after_run_id
                last = index + 1 == len(names)
                if index + 2 < len(names):
                    ahead[index + 2] = _kernel_ahead(names[index + 2], settings)
                elif last and before_last is not None:
                    before_last()
                outcome = execute(
                    name, own, settings, client, after_run_id=follows, kernel=kernel,
                    on_results=last_results if last else None, **kwargs,
                )  # fmt: skip
            done.append(outcome)
            ran[name] = outcome
    finally:
        for unused in ahead.values():
            if unused is not None:
                unused.shut_down()
    return done


def _kernel_ahead(name: str, settings: Settings) -> KernelAhead | None:
    from pipeline_lib.runs.kernel_ahead import start_ahead

    return start_ahead(notebook_path(settings, name), settings)


def _first_kernel(names: Sequence[str], settings: Settings, first: KernelAhead | None) -> KernelAhead | None:
    """`first` if it is the first notebook's kernel, else one started now (None: no notebooks)."""
    if first is not None and names and first.path == notebook_path(settings, names[0]):
        return first
    if first is not None:
        first.shut_down()
    return _kernel_ahead(names[0], settings) if names else None


def _why_not(upstream: str, outcome: RunRecord | NotRun | None) -> str:
    if isinstance(outcome, RunRecord):
        return f"not run because {upstream} {outcome.status.replace('_', ' ')} (run {outcome.run_id})"
    return f"not run because {upstream} did not run"
