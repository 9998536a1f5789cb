"""The db-api client: one `core` (endpoint, calls, errors) under two faces, `sync` for notebooks, jobs,
the CLI and dashboards and `aio` for the web app; `tls` for their channel credentials."""
