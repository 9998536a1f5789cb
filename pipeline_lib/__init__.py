"""The shared library of Student Data Workbench: settings, the db-api client and the CLI."""
