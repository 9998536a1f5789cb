"""The shared library of Student Data Workbench: settings, the db-api client and the CLI."""

import os

# gRPC's fork handlers (on by default in grpcio's builds) restart its poller thread in the child of
# every fork; a child that then closes its descriptors before exec (subprocess with preexec_fn, as
# pyspark starts the driver JVM) dies of the poller's EBADF about once in thirty forks while a
# channel is busy (grpc/grpc#43055). Nothing here forks a process that keeps using gRPC, so turn the
# handlers off. gRPC reads this once, when first imported: every package that imports grpc imports
# this one first (db_api and web_app do in their __init__), and child processes inherit it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
