"""`workbench schedule install`: the schedule file turned into a system cron table.

cron starts jobs with an almost empty environment, so every line carries what `workbench run`
needs: the checkout to `cd` into, absolute paths to the venv, the `WORKBENCH_*` settings of the
installing shell (never a credential: a cron table is readable by others; runs read the db-api
token from the data directory and other secrets from the checkout's `.env`), every path setting
as the absolute path it resolved to where `install` ran, and a log file per notebook. A setting
left out is named, with the reason, in a comment line of the table and on standard error.

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
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import SecretStr

from pipeline_lib.runs.schedule import Job
from pipeline_lib.settings import PROJECT_DIR, Settings

CRON_D = Path("/etc/cron.d")
# Never written into a cron table (readable by others): runs read these from the data directory
# or from the checkout's `.env` (cron starts them there). Storage URIs carry passwords
# (`mongodb://user:pass@host/...`); a webhook URL is often a credential in itself.
SECRET_SETTINGS = {
    "WORKBENCH_DB_API_TOKEN",
    "WORKBENCH_JWT_SECRET",
    "WORKBENCH_MONGO_URI",
    "WORKBENCH_LIMITS_URI",
    "WORKBENCH_ALERT_SMTP_PASSWORD",
    "WORKBENCH_ALERT_WEBHOOK",
} | {  # and any setting declared secret (`SecretStr`), should one be added
    f"WORKBENCH_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if SecretStr in (field.annotation, *typing.get_args(field.annotation))
}
# The secret runs need, and where they read it when it is not in the environment: generated into
# the data dir (`db_api_token`) unless the checkout's `.env` sets it.
_RUNS_TOKEN, _RUNS_TOKEN_FILE = "WORKBENCH_DB_API_TOKEN", "db_api_token"
# Any other setting's URL may carry a credential too: user info (`scheme://user:pass@host`,
# `scheme://user@host`) or a secret parameter (Spark Connect's `sc://host:port/;token=...`, a
# signed URL's `sig=` or `X-Amz-Signature=`).
_CREDENTIAL_URL = re.compile(
    r"[a-z][a-z0-9+.-]*://([^/?#@\s]*@|\S*[;?&][a-z_-]*"
    r"(token|password|passwd|pwd|secret|key|sig|signature|auth|credential)=)",
    re.IGNORECASE,
)
# The settings, by the variable that sets each: only these are carried (Settings reads the names
# whatever their case, so they are compared upper-cased).
_SETTING_VARIABLES = {f"WORKBENCH_{name.upper()}": name for name in Settings.model_fields}
# The settings declared as paths (`Path`, `Path | None`): written resolved, as `install` read them.
_PATH_VARIABLES = {
    f"WORKBENCH_{name.upper()}": name
    for name, field in Settings.model_fields.items()
    if Path in (field.annotation, *typing.get_args(field.annotation))
}
# Only names a shell takes as a variable are copied (anything else would be a command).
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The names a `.env` file sets (`NAME=value`, `export NAME=value`); values are never read here.
_DOTENV_NAME = re.compile(r"^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=", re.MULTILINE)
BEGIN = "# BEGIN student-data-workbench"
END = "# END student-data-workbench"
PRUNE_CRON = "17 3 * * *"  # old runs forgotten daily, at a quiet hour (`workbench prune-runs`)


def _environment(settings: Settings, environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The variables each cron line sets, and a sentence for each setting left out."""
    # Settings only (a variable of another name, e.g. a script's own, is no setting), named as
    # Settings reads them; a shell variable name only (anything else would be a command).
    given = {
        name.upper(): value
        for name, value in environ.items()
        if name.upper() in _SETTING_VARIABLES and _SHELL_NAME.fullmatch(name)
    }
    env, left_out = {}, []
    in_checkout_env = _checkout_env_names()
    for name, value in sorted(given.items()):
        if name in _PATH_VARIABLES:
            continue
        if name in SECRET_SETTINGS:
            why = " (a secret):"
        elif _CREDENTIAL_URL.search(value):
            why = ": a URL with a credential (user info or a token);"
        else:
            env[name] = value
            continue
        left_out.append(f"Left out {name}{why} {_where_runs_find(name, settings, in_checkout_env)}.")
    for name, field in _PATH_VARIABLES.items():
        # What the installing process resolved, against the folder it started in: a cron line
        # runs in the checkout, where a relative path would mean another file.
        if field == "data_dir":
            env[name] = str(settings.data_dir.resolve())
        elif field in settings.model_fields_set:
            if (path := getattr(settings, field)) is not None:
                env[name] = str(path)
        elif name in given:  # as Settings resolve it (a caller's environ, not the one read)
            env[name] = os.path.abspath(Path(given[name]).expanduser())
    for name, value in env.items():
        # cron reads a table line by line: a newline in a value would add a line of its own.
        if "\n" in value or "\r" in value:
            raise ValueError(f"{name} holds a line break, which a cron table cannot carry; fix the setting")
    if "JAVA_HOME" in environ:
        env["JAVA_HOME"] = environ["JAVA_HOME"]
    return env, left_out


def _checkout_env_names() -> set[str]:
    """The names the checkout's `.env` sets (where cron starts runs), upper-cased; its values unread."""
    try:
        text = (PROJECT_DIR / ".env").read_text()
    except (OSError, UnicodeDecodeError):
        return set()
    return {m.group(1).upper() for m in _DOTENV_NAME.finditer(text)}


def _where_runs_find(name: str, settings: Settings, names: set[str]) -> str:
    """Where a run started by cron (in the checkout, without `name`) reads the setting; `names`:
    those the checkout's `.env` sets."""
    where = f"a run that needs it reads it from {PROJECT_DIR / '.env'}"
    if name not in names:
        where += " (not set there)"
    if name == _RUNS_TOKEN:
        secret_file = settings.data_dir.resolve() / "secrets" / _RUNS_TOKEN_FILE
        where += f" or {secret_file}"
        if name not in names and not secret_file.is_file():
            # A db-api given its token in the environment writes no file: cron's runs would
            # generate a token of their own there and be refused.
            where += " (not there either: put it in one of them, or runs started by cron will fail)"
    return where


def left_out(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """A sentence for each `WORKBENCH_*` setting a cron table leaves out, and why."""
    return _environment(settings, os.environ if environ is None else environ)[1]


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
    env, notes = _environment(settings, environ)
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    lines = [
        f"# Installed by `workbench schedule install` from {settings.schedule_file.resolve()}.",
        "# Edit that file and install again rather than editing this one.",
        *(f"# {note}" for note in notes),
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
    _tell(left_out(settings))
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
    _tell(left_out(settings))
    return "the user's crontab"


def _tell(notes: Sequence[str]) -> None:
    for note in notes:  # also a comment line of the table, where `--print` shows it
        print(f"warning: {note}", file=sys.stderr)
