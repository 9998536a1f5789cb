"""The `workbench` command: one Typer app (`main`), one module per command group."""

import sys

# jsonschema, which nbformat (papermill, nbconvert, Voilà) imports, loads rfc3987-syntax when it is
# installed (an extra of jupyter-events'), and that module builds some thirty Earley parsers at
# import: about 3 s at the start of every `workbench` process (each run, each service). Nothing
# here checks IRI formats, so jsonschema is told the package is absent and skips those checks.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
