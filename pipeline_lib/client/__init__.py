"""The db-api client: `sync` for notebooks, jobs and the CLI, `aio` for the web app, `tls` for their
channel credentials."""
