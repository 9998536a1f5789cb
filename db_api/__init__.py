"""The db-api: a gRPC data service, the only component that opens the database."""

import pipeline_lib  # noqa: F401  (sets GRPC_ENABLE_FORK_SUPPORT before anything imports grpc)
