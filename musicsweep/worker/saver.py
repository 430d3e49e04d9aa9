"""The worker's background saver: one thread delivers a generated batch while the next one generates.

Uploads to a remote store take seconds per batch; on the main thread the GPU would wait for
them. The worker hands each batch's delivery (a callable) to this thread instead. Tasks run one at
a time, in the order handed in, so each clip keeps its WAV -> cost row -> `.done` order and
batches are delivered in the order generated. The queue is bounded: once `max_waiting` tasks wait
behind the one running, `submit` blocks, so a slow store slows generation down (back-pressure)
instead of letting undelivered clips pile up.

A task handles its own ordinary errors (the worker fails the clips it could not save). An error
that escapes a task (`StoreUnreachable`) is fatal: the thread skips every later task, leaving their
clips in the spool, and the error is raised on the main thread at its next `submit` or `drain`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

Task = Callable[[], None]


class Saver:
    """One thread running handed-in tasks in order; at most `max_waiting` wait behind the running one."""

    def __init__(self, max_waiting: int = 1) -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be at least 1, got {max_waiting}")
        self.tasks: queue.Queue[Task | None] = queue.Queue(maxsize=max_waiting)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def submit(self, task: Task) -> None:
        """Queue `task`, blocking while the queue is full; raises the fatal error of an earlier task instead."""
        self.raise_error()
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="saver", daemon=True)
            self.thread.start()
        self.tasks.put(task)

    def wait(self) -> None:
        """Return once every task handed in so far has run (or been skipped after a fatal error)."""
        self.tasks.join()

    def drain(self) -> None:
        """`wait`, then raise the fatal error of a task, if any."""
        self.wait()
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for every task, then end the thread (a later `submit` starts a new one)."""
        if self.thread is not None:
            self.tasks.put(None)
            self.thread.join()
            self.thread = None

    def __enter__(self) -> Saver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Every handed-in task has run when the block is left; the saver's error is raised only if the
        block itself raised none (the block's own error is the one to report)."""
        self.close()
        if kind is None:
            self.raise_error()

    def _run(self) -> None:
        while True:
            task = self.tasks.get()
            try:
                if task is None:
                    return
                if self.error is None:
                    task()
            except BaseException as error:  # handed to the main thread, which decides what it means
                self.error = error
            finally:
                self.tasks.task_done()
