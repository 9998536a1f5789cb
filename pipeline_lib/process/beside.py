"""A step that runs in a thread beside the analyses: one that waits on the db-api (which does its
work in its own process, on the other core) while the kernel fits models.

Such a step must not warn: the model fits record warnings with `warnings.catch_warnings`, which
sees every thread's, and would report its warnings as theirs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Beside(Generic[T]):
    """`compute()` in a thread from now on; `result()` its value, or its error raised."""

    def __init__(self, compute: Callable[[], T], name: str) -> None:
        self._compute = compute
        self._value: T | None = None
        self._error: BaseException | None = None
        # A daemon: a run stopped before it asks for the result is not held up by it.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._compute()
        except BaseException as exc:  # raised where the result is asked for
            self._error = exc

    def done(self) -> bool:
        """Whether it has ended (with a value or an error)."""
        return not self._thread.is_alive()

    def result(self) -> T:
        """Wait for it (in steps: an interrupt of the kernel stops the wait at once)."""
        while self._thread.is_alive():
            self._thread.join(0.5)
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when no error was
