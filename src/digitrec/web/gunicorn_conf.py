"""gunicorn settings for the web app, and `serve()` that runs it (used by `digitrec serve`).

Also usable directly: gunicorn -c src/digitrec/web/gunicorn_conf.py 'digitrec.web:create_app()'
(the settings of digitrec.config apply: DIGITREC_HOST, DIGITREC_PORT, DIGITREC_WORKERS,
DIGITREC_WORKER_THREADS, DIGITREC_WORKER_CONNECTIONS, DIGITREC_WEIGHTS, ...)."""

from __future__ import annotations

import sys
from pathlib import Path

from digitrec.config import cpu_cores, read

_SETTINGS = read()


def default_workers() -> int:
    """One worker per core, at most 4 (each holds its own copy of the models)."""
    return max(1, min(4, cpu_cores()))


def worker_class_for(threads: int) -> str:
    """For one thread per worker (the default), gunicorn's sync worker as digitrec.web.worker
    adapts it: the app is CPU-bound, a worker serves one request at a time, and each new
    connection goes to a worker that is free, so the cores share the load evenly (no
    keep-alive: a connection per request). With more threads, gunicorn's gthread worker:
    keep-alive, and a client slow to send its request holds one thread, not a worker."""
    return "digitrec.web.worker.SyncWorker" if threads <= 1 else "gthread"


def connections_per_worker(threads: int) -> int:
    """gthread workers take at most this many connections each ($DIGITREC_WORKER_CONNECTIONS,
    else 2 x threads), so that keep-alive clients spread over all workers instead of piling
    onto whichever accepted first."""
    return read().worker_connections or 2 * threads


bind = f"{_SETTINGS.host}:{_SETTINGS.port}"
workers = _SETTINGS.workers or default_workers()
threads = _SETTINGS.worker_threads
worker_class = worker_class_for(threads)
worker_connections = connections_per_worker(threads)
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"
control_socket_disable = True  # no $HOME/.gunicorn/gunicorn.ctl: instances must not collide


def post_fork(server, worker) -> None:
    """Share the cores among workers so torch threads don't oversubscribe the CPU."""
    import torch
    torch.set_num_threads(max(1, cpu_cores() // max(1, server.cfg.workers)))


def _settings() -> dict:
    names = ("bind", "workers", "threads", "worker_class", "worker_connections", "timeout",
             "graceful_timeout", "keepalive", "accesslog", "errorlog", "loglevel",
             "control_socket_disable", "post_fork")
    return {name: globals()[name] for name in names}


def _draining_arbiter():
    """gunicorn's master, whose graceful stop (SIGTERM) first makes the listening sockets take no
    new connection (digitrec.web.worker.refuse_new_connections), so that the workers can serve
    every request already queued and exit with none left behind. Not when the sockets live on
    in another master (USR2 re-exec, systemd's sockets, reuse-port)."""
    from gunicorn.arbiter import Arbiter

    from digitrec.web.worker import refuse_new_connections

    class DrainingArbiter(Arbiter):
        def stop(self, graceful: bool = True) -> None:
            shared = self.reexec_pid or self.master_pid or self.systemd or self.cfg.reuse_port
            if graceful and not shared:
                for listener in self.LISTENERS:
                    refuse_new_connections(listener.sock)
            super().stop(graceful)

    return DrainingArbiter


def _check_before_forking(directory: Path, inference: str | None) -> None:
    """Recognizer.check once, before any worker starts, so that unusable weights are one clear
    error rather than a traceback per worker. It runs in a child process: torch operations in
    gunicorn's master would start OpenMP threads that the forked workers then hang on."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from digitrec.recognizer import Recognizer
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(Recognizer.check, directory, inference).result()


def serve(host: str | None = None, port: int | None = None, workers: int | None = None,
          threads: int | None = None, weights: str | None = None, inference: str | None = None,
          dev: bool = False) -> None:
    """Serve the app with gunicorn (or Flask's development server when `dev`); None: the
    setting's value (digitrec.config)."""
    from digitrec.models import BUNDLED_DIR
    directory = Path(weights) if weights else BUNDLED_DIR
    inference = inference or _SETTINGS.inference
    _check_before_forking(directory, inference)
    from digitrec.web import create_app
    host = host or _SETTINGS.host
    port = _SETTINGS.port if port is None else port
    config = {"WEIGHTS": str(directory), "INFERENCE": inference}
    if dev:
        create_app({**config, "TEMPLATES_AUTO_RELOAD": True}).run(host=host, port=port,
                                                                   threaded=True)
        return
    from gunicorn.app.base import BaseApplication

    class DigitrecApplication(BaseApplication):
        """gunicorn running `create_app(config)` in each worker."""

        def load_config(self) -> None:
            options = {**_settings(), "bind": f"{host}:{port}"}
            if workers:
                options["workers"] = workers
            if threads:
                options["threads"] = threads
                options["worker_class"] = worker_class_for(threads)
                options["worker_connections"] = connections_per_worker(threads)
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(config)

        def run(self) -> None:
            try:
                _draining_arbiter()(self).run()
            except RuntimeError as exc:  # as gunicorn's BaseApplication.run reports it
                sys.exit(f"\nError: {exc}\n")

    DigitrecApplication().run()
