"""The test suite and its benchmarks."""

import pipeline_lib  # noqa: F401  (sets GRPC_ENABLE_FORK_SUPPORT before anything imports grpc)
