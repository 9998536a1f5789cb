"""`workbench schedule install`: the schedule file turned into a system cron table.

cron starts jobs with an almost empty environment, so every line carries what `workbench run`
needs: the checkout to `cd` into, absolute paths to the venv, the `WORKBENCH_*` settings of the
installing shell (never secrets: a cron table is readable by others, and the runs read the
db-api token from the data directory), and a log file per notebook.

`after` lines get no cron line of their own: when the schedule has any, every job's line runs
`workbench run JOB --followers-from <schedule file>`, which, once the job's run succeeds, runs
its followers (and theirs) from that file, logging to the job's log (see runs/schedule.py).
One more line forgets old runs once a day (`workbench prune-runs`), as the scheduler does.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline_lib.runs.schedule import Job
from pipeline_lib.settings import PROJECT_DIR, Settings

CRON_D = Path("/etc/cron.d")
# Never written into a cron table (readable by others): runs read these from the data directory
# or from the checkout's `.env` (cron starts them there). A webhook URL is often a credential.
SECRET_SETTINGS = {
    "WORKBENCH_DB_API_TOKEN",
    "WORKBENCH_JWT_SECRET",
    "WORKBENCH_MONGO_URI",
    "WORKBENCH_ALERT_SMTP_PASSWORD",
    "WORKBENCH_ALERT_WEBHOOK",
}
# Only names a shell takes as a variable are copied (anything else would be a command).
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BEGIN = "# BEGIN student-data-workbench"
END = "# END student-data-workbench"
PRUNE_CRON = "17 3 * * *"  # old runs forgotten daily, at a quiet hour (`workbench prune-runs`)


def _environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in sorted(environ.items())
        if k.startswith("WORKBENCH_") and k not in SECRET_SETTINGS and _SHELL_NAME.fullmatch(k)
    }
    for name, value in env.items():
        # cron reads a table line by line: a newline in a value would add a line of its own.
        if "\n" in value or "\r" in value:
            raise ValueError(f"{name} holds a line break, which a cron table cannot carry; fix the setting")
    env["WORKBENCH_DATA_DIR"] = str(settings.data_dir.resolve())
    if "JAVA_HOME" in environ:
        env["JAVA_HOME"] = environ["JAVA_HOME"]
    return env


def _cron_escape(command: str) -> str:
    # cron turns an unescaped % into a newline.
    return command.replace("%", r"\%")


def table(
    jobs: list[Job],
    settings: Settings,
    *,
    user: str | None,
    environ: Mapping[str, str] | None = None,
    followers: Sequence[Job] = (),
) -> str:
    """The cron lines for `jobs`; `user` is the user field of /etc/cron.d files (None for a crontab).
    With `followers` (the `after` lines), each job runs them when it succeeds."""
    environ = os.environ if environ is None else environ
    venv_bin = Path(sys.executable).parent
    logs = settings.data_dir.resolve() / "logs"
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in _environment(settings, environ).items())
    lines = [
        f"# Installed by `workbench schedule install` from {settings.schedule_file.resolve()}.",
        "# Edit that file and install again rather than editing this one.",
        "SHELL=/bin/sh",
        f"PATH={venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    then = f"--followers-from {shlex.quote(str(settings.schedule_file.resolve()))} " if followers else ""
    workbench = f"{assignments} {shlex.quote(str(venv_bin / 'workbench'))}"
    who = f" {user}" if user else ""

    def line(cron: str, arguments: str, log_name: str) -> str:
        log = shlex.quote(str(logs / f"cron-{log_name}.log"))
        command = (
            f"mkdir -p {shlex.quote(str(logs))} && cd {shlex.quote(str(PROJECT_DIR))} && "
            f"{workbench} {arguments} >> {log} 2>&1"
        )
        return f"{cron}{who} {_cron_escape(command)}"

    if settings.run_keep_days:  # what the scheduler does once a day (runs/retention.py)
        lines.append(line(PRUNE_CRON, "prune-runs", "prune-runs"))
    for job in jobs:
        lines.append(line(job.cron, f"run {job.command} {then}--triggered-by cron", job.notebook))
    return "\n".join(lines) + "\n"


def install_cron_d(
    jobs: list[Job], settings: Settings, name: str = "student-data-workbench", followers: Sequence[Job] = ()
) -> Path:
    """Write /etc/cron.d/<name> (needs root); cron picks it up within a minute."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError("a cron.d file name may hold only letters, digits, '-' and '_' (cron skips others)")
    target = CRON_D / name
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    text = table(jobs, settings, user=user, followers=followers)
    staging = target.with_name(f".{name}.tmp")
    staging.write_text(text)
    staging.chmod(0o644)  # cron ignores files writable by group or others
    staging.replace(target)
    return target


def install_user_crontab(jobs: list[Job], settings: Settings, followers: Sequence[Job] = ()) -> str:
    """Replace this project's block in the user's crontab, keeping every other line."""
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    existing = current.stdout if current.returncode == 0 else ""
    kept, inside = [], False
    for line in existing.splitlines():
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif not inside:
            kept.append(line)
    block = [BEGIN, *table(jobs, settings, user=None, followers=followers).splitlines(), END]
    crontab = "\n".join([*kept, *block]) + "\n"
    subprocess.run(["crontab", "-"], input=crontab, text=True, check=True, capture_output=True)
    return "the user's crontab"
