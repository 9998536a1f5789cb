"""The FastAPI web app: student form, JSON API, results and runs pages (built on the db-api)."""

import pipeline_lib  # noqa: F401  (sets GRPC_ENABLE_FORK_SUPPORT before anything imports grpc)
