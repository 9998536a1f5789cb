"""The `workbench` command: one Typer app (`main`), one module per command group."""
