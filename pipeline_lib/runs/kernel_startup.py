"""Loaded into every run's kernel as an IPython extension (`kernel.LocalKernelManager` asks for
it): keeps a shutdown race of the kernel out of the command's output, and makes the kernel's exit
quick (`quick_exit`: the run waits for it).

Asked to shut down, ipykernel closes its IOPub socket and then publishes its "idle" status on it;
pyzmq logs the failed send ("Socket operation on non-socket") with its traceback to the kernel's
stderr, which is the terminal of `workbench run all`. The run's outputs were all delivered by
then, so that one error is dropped; every other error of the kernel's message streams is kept.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from pipeline_lib.runs.quick_exit import freeze_heap_at_exit

# Where pyzmq's ZMQStream logs an exception raised in a message callback.
STREAM_LOGGER = "tornado.general"


def is_not_a_send_on_a_closed_socket(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return getattr(error, "errno", None) != errno.ENOTSOCK


def load_ipython_extension(ipython: Any) -> None:
    logging.getLogger(STREAM_LOGGER).addFilter(is_not_a_send_on_a_closed_socket)
    freeze_heap_at_exit()
