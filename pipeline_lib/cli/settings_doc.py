"""The settings table of the documentation, generated from the `Settings` model.

`python -m pipeline_lib.cli.settings_doc > docs/settings.md` writes it; a test fails while the
committed file differs. Defaults are shown as a user of any checkout reads them: paths under the
checkout as `<checkout>/...`, generated secrets by where they are generated, computed defaults by
their expression, so the page holds nothing of the machine it was generated on.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from pipeline_lib import settings as settings_module
from pipeline_lib.runs.cron_install import SECRET_SETTINGS
from pipeline_lib.settings import PROJECT_DIR, Settings

REGENERATE = "python -m pipeline_lib.cli.settings_doc > docs/settings.md"

# Secrets the system generates when unset, and where (see `settings.db_api_token`/`jwt_secret`).
GENERATED_SECRETS = {
    "db_api_token": "<data dir>/secrets/db_api_token",
    "jwt_secret": "<data dir>/secrets/jwt_secret",
}

# Meanings for fields declared without a `description`; a description in settings.py wins.
# Better moved there (one place), after which an entry here is simply unused.
FALLBACK_MEANINGS = {
    "spark_master": "where notebooks run Spark: `local[*]`, `spark://HOST:PORT`, `yarn`, `k8s://...` "
    "or Spark Connect `sc://...`",
    "web_host": "interface the web app binds",
    "web_port": "port of the web app",
    "voila_port": "port of the Voilà dashboards",
    "access_token_minutes": "lifetime of a JWT access token (API and signed-in pages)",
    "max_form_bytes": "largest form post the web app accepts",
    "max_json_bytes": "largest JSON body the web app accepts",
    "max_upload_bytes": "largest bulk upload (CSV or NDJSON) the web app accepts",
    "alert_smtp_port": "port of the SMTP server",
    "alert_smtp_user": "SMTP user name, if the server wants a login",
    "alert_smtp_password": "SMTP password, if the server wants a login",
}

_TYPE_NAMES: dict[Any, str] = {
    str: "text",
    int: "integer",
    float: "number",
    bool: "`true`/`false`",
    Path: "path",
    SecretStr: "secret",
    dt.timedelta: "duration",
}


def env_name(field: str) -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), len(args) < len(typing.get_args(annotation))
    return annotation, False


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def type_text(info: FieldInfo) -> str:
    """The kind of value and its bounds, e.g. `integer, 1..1024`."""
    kind, _ = _optional(info.annotation)
    text = _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
    low = high = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = _number(rule.ge)
        elif isinstance(rule, annotated_types.Gt):
            low = f"> {_number(rule.gt)}"
        elif isinstance(rule, annotated_types.Le):
            high = _number(rule.le)
        elif isinstance(rule, annotated_types.Lt):
            high = f"< {_number(rule.lt)}"
    if low is not None and high is not None and not low.startswith(">") and not high.startswith("<"):
        return f"{text}, {low}..{high}"
    bounds = [b if b.startswith((">", "<")) else f"{op} {b}" for b, op in ((low, ">="), (high, "<=")) if b]
    return ", ".join([text, *bounds])


def _factory_expression(name: str) -> str | None:
    """The source of a `default_factory=lambda: ...`, read from settings.py."""
    tree = ast.parse(inspect.getsource(settings_module))
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            for call in ast.walk(node):
                if isinstance(call, ast.keyword) and call.arg == "default_factory":
                    body = call.value.body if isinstance(call.value, ast.Lambda) else call.value
                    return ast.unparse(body)
    return None


def _bytes(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def default_text(name: str, info: FieldInfo) -> str:
    """The default as a user of any checkout reads it."""
    if info.default_factory is not None:
        expression = _factory_expression(name)
        return f"`{expression}`, when settings load" if expression else "computed when settings load"
    value = info.default
    if value is None:
        if name in GENERATED_SECRETS:
            return f"generated into `{GENERATED_SECRETS[name]}`"
        return "unset"
    if isinstance(value, Path):
        try:
            return f"`<checkout>/{value.relative_to(PROJECT_DIR).as_posix()}`"
        except ValueError:
            return f"`{value.as_posix()}`"
    if isinstance(value, SecretStr):
        return "(a secret)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dt.timedelta):
        return f"`{_number(value.total_seconds())}` seconds"
    if isinstance(value, int) and name.endswith("_bytes"):
        return f"`{value}`{_bytes(value)}"
    if isinstance(value, float):
        return f"`{_number(value)}`"
    return f"`{value}`"


def meaning_text(name: str, info: FieldInfo) -> str:
    """The field's description (else a fallback), other settings named as a user sets them."""
    text = info.description or FALLBACK_MEANINGS.get(name, "")

    def named(match: re.Match[str]) -> str:
        other, below = match.group(1), match.group(2)
        return f"`<data dir>{below}`" if other == "data_dir" else f"`{env_name(other)}`{below}"

    fields = "|".join(sorted(Settings.model_fields, key=len, reverse=True))
    text = re.sub(rf"(?<![`\w])({fields})((?:/[\w.-]+)*)(?![`\w])", named, text)
    return text.replace("|", "\\|")


def table() -> str:
    lines = ["| variable | default | value | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        row = (f"`{env_name(name)}`", default_text(name, info), type_text(info), meaning_text(name, info))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_markdown() -> str:
    """docs/settings.md: the introduction and one row per field of `Settings`."""
    prefix = Settings.model_config.get("env_prefix", "")
    not_copied = ", ".join(f"`{name}`" for name in sorted(SECRET_SETTINGS))
    return f"""<!-- Generated from pipeline_lib/settings.py by pipeline_lib/cli/settings_doc.py: do not edit.
     Regenerate with `{REGENERATE}`. -->

# Settings

Every setting is an environment variable with the prefix `{prefix}` (the field of
`pipeline_lib/settings.py` in capitals), or a line `NAME=value` in a `.env` file in the
checkout or in the directory a command is started in (that one wins). The defaults run
everything on one machine: data under the checkout's `var/`, every server on loopback, the
embedded store.

- **Paths** are made absolute when settings load (a relative value against the directory the
  command was started in) and handed, resolved, to every child process: services started by
  `workbench up`, runs, notebook kernels and the Spark driver.
- **Secrets** left unset are generated on first use into the data dir's `secrets/` folder
  (owner-only files); clients on the same machine read them from there.
- `workbench schedule install` copies the installing shell's `{prefix}*` variables into each
  cron line, except
  {not_copied}
  and any value that is a URL with a credential (user info or a token parameter), each named
  with the reason in a comment of the table (runs reach the store through the db-api and read
  its token from the data dir, other secrets from the checkout's `.env`); path settings are
  written as the absolute paths they resolved to where `install` ran. Install again after
  changing a setting.

`<checkout>` is the folder of this repository; `<data dir>` is the value of `{env_name("data_dir")}`.

{table()}
"""


def main() -> None:
    sys.stdout.write(render_markdown())


if __name__ == "__main__":
    main()
