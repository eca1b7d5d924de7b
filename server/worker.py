"""The embedded pool's worker process: :mod:`multipa_server.runtime` behind a pipe.

:func:`main` is the process entry of :class:`multipa_server.local_pool.LocalPool`.
It talks over one duplex pipe, in pickled dataclasses:

- worker to pool, once: :class:`Ready` (models loaded) or :class:`Failed` (they
  could not be, and the process exits);
- pool to worker: a :class:`~multipa_server.pool.Job`, answered by one
  :class:`Done` or :class:`Failed`; or a list of up to ``WorkerOptions.batch`` jobs,
  assessed together and answered by a list of as many, in order; ``None`` asks the
  worker to exit.

The worker ignores SIGINT and SIGTERM: on Ctrl-C or a service stop the whole
process group gets the signal, and the server, which drains in-flight turns
first, decides when the workers stop. A worker whose server died exits when the
pipe closes.
"""

from __future__ import annotations

import logging
import os
import signal
from multiprocessing.connection import Connection

from .runtime import Done, Failed, Ready, Runtime, WorkerOptions, start

__all__ = ["Done", "Failed", "Ready", "WorkerOptions", "main", "serve"]

log = logging.getLogger(__name__)


def main(conn: Connection, options: WorkerOptions) -> None:
    """Run one worker until the pool sends ``None`` or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker[{os.getpid()}] %(name)s: %(message)s")
    runtime = start(options)
    if isinstance(runtime, Failed):
        conn.send(runtime)
        return
    conn.send(runtime.ready())
    serve(conn, runtime)


def serve(conn: Connection, runtime: Runtime) -> None:
    """Answer jobs (one, or a list) until told to stop."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if message is None:
            return
        if isinstance(message, list):
            conn.send(runtime.answer(message))
        else:
            conn.send(runtime.answer([message])[0])
