"""Run the collector: uvicorn (uvloop + httptools) serving :func:`collector.api.create_app`.

uvicorn turns SIGTERM and SIGINT into a graceful shutdown: it stops accepting connections, lets
requests in flight finish, then runs the app's lifespan exit, which writes every pending event to
the store and closes it. ``run`` returns after that.
"""

from __future__ import annotations

import gc
import logging
import sys

import uvicorn

from collector.api import create_app
from collector.config import CollectorConfig
from collector.store import StoreError, open_store
from gatewatch.configfile import split_host_port


def tune_gc() -> None:
    """Make the cyclic garbage collector run far less often in the collector process.

    Ingest allocates dozens of short-lived objects per event (freed by reference counting, none
    of them cyclic), so with the default thresholds the collector spends ~15-20% of its ingest
    time in gen-0/1 collections that find nothing. ``freeze`` moves everything allocated at start
    (modules, the app) out of the collector's view for good.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def run(config: CollectorConfig) -> None:
    """Serve until SIGTERM/SIGINT. Exits non-zero if the app cannot start (e.g. the store)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = split_host_port(config.listen)
    try:
        # Opened here, not in the app's startup, so a bad store path is one clear line, not a
        # traceback from inside uvicorn's lifespan.
        store = open_store(config.store)
    except StoreError as exc:
        print(f"gatewatch collector: {exc}", file=sys.stderr)
        sys.exit(3)
    app = create_app(config, store=store)
    tune_gc()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,  # one line per ingest batch is noise; /metrics counts batches' events
            log_level="info",
            timeout_graceful_shutdown=30,
        )
    )
    try:
        server.run()
    except SystemExit:
        if server.started:
            raise
        # uvicorn exits this way when startup fails, nearly always the bind (it logged why).
    finally:
        if not server.started:
            store.close()  # the app's lifespan never ran, so it did not close the store
    if not server.started:
        print(f"gatewatch collector: cannot listen on {config.listen} (see the error above)", file=sys.stderr)
        sys.exit(3)
