"""Launcher: a warm Python process that forks the steps of a local run.

kfp.local starts every step as ``python3 -m kfp.dsl.executor_main ...`` in a new
interpreter, which then imports kfp and the notebook's libraries again: about 0.6 s
plus the libraries' import time, per step. For ``--local`` runs the generated script
forks a *warm* process once, which imports ``kfp.dsl.executor_main`` and the
notebook's modules, and points kfp.local's Python executable at a small launcher.
The launcher hands the step's command line, working directory, environment and
standard streams to the warm process over a UNIX socket; the warm process forks a
child that runs the executor with them and reports its exit status. kfp.local stays
the orchestrator: it sees a subprocess that streams its output and exits as usual.

This module runs inside the generated script and uses only the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from typing import Iterable

#: Module whose runs the launcher forks; every other command runs the real interpreter.
EXECUTOR_MODULE = "kfp.dsl.executor_main"

#: What the executor module imports, loaded ahead in the warm process.
EXECUTOR_DEPENDENCIES = ("kfp.dsl", "kfp.dsl.executor", "kfp.dsl.kfp_config", "kfp.dsl.utils")

#: Libraries that start threads or services on import and must not be imported before fork.
FORK_UNSAFE = frozenset({"tensorflow", "torch", "jax", "jaxlib", "keras", "ray", "pyspark", "grpc",
                         "dask", "distributed", "tensorflow_datasets", "mxnet", "cupy"})

_HEADER = 8

# The launcher program kfp.local runs in place of python3: argv = socket, real python, args.
_CLIENT = r"""
import json, os, socket, sys
path, real, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if args[:2] == ["-m", "kfp.dsl.executor_main"]:
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        conn = None
    if conn is not None:
        payload = json.dumps({"argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [len(payload).to_bytes(8, "big")], [0, 1, 2])
        conn.sendall(payload)
        status = b""
        while True:
            chunk = conn.recv(64)
            if not chunk:
                break
            status += chunk
        os._exit(int(status) if status.strip().lstrip(b"-").isdigit() else 1)
os.execv(real, [real, *args])
"""


def _receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("launcher closed the connection")
        data += chunk
    return data


def _run_executor(request: dict, fds: list[int]) -> int:
    """In the forked child: become the step process the launcher stands for."""
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for handler in list(logging.root.handlers):
        logging.root.removeHandler(handler)
    # Standard streams as a new interpreter has them, on the caller's descriptors (the
    # parent may have replaced sys.stdout, as pytest does); line-buffered so logs stream.
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    sys.stdin = sys.__stdin__ = open(0, encoding=encoding, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding=encoding, buffering=1, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding=encoding, errors="backslashreplace",
                                       buffering=1, closefd=False)
    sys.argv = [EXECUTOR_MODULE, *request["argv"][2:]]
    try:
        runpy.run_module(EXECUTOR_MODULE, run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _preload(statements: Iterable[str]) -> None:
    for statement in statements:
        top = statement.split()[1].split(".")[0] if len(statement.split()) > 1 else ""
        if top in FORK_UNSAFE:
            continue
        try:
            exec(statement, {})
        except Exception:  # a module missing here fails in the step itself, with its message
            pass
    # The executor's own dependencies; the executor module itself must run fresh as __main__.
    for module in EXECUTOR_DEPENDENCIES:
        try:
            __import__(module)
        except ImportError:
            pass


def _serve(server: socket.socket, statements: list[str]) -> None:
    _preload(statements)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        conn, _ = server.accept()
        try:
            message, fds, _, _ = socket.recv_fds(conn, _HEADER, 3)
            request = json.loads(_receive(conn, int.from_bytes(message, "big")))
        except (OSError, ValueError, ConnectionError):
            conn.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                code = _run_executor(request, fds)
            finally:
                try:
                    conn.sendall(str(code).encode())
                finally:
                    os._exit(code)
        conn.close()
        for fd in fds:
            os.close(fd)


class WarmLauncher:
    """Context manager that makes kfp.local fork its steps from a warm process.

    ``preload`` lists the import statements the warm process runs first. When
    ``enabled`` is false, or the platform cannot fork or pass file descriptors, it
    does nothing and every step starts a new interpreter.
    """

    def __init__(self, preload: Iterable[str] = (), enabled: bool = True):
        self.preload = list(preload)
        self.enabled = enabled and hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform.startswith("linux")
        self._directory: str | None = None
        self._pid: int | None = None
        self._real_executable = sys.executable

    def __enter__(self) -> WarmLauncher:
        if not self.enabled:
            return self
        self._directory = tempfile.mkdtemp(prefix="nbconvert-kfp-")
        path = os.path.join(self._directory, "warm.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(64)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _serve(server, self.preload)
            finally:
                os._exit(0)
        self._pid = pid
        server.close()
        launcher = os.path.join(self._directory, "step-python")
        with open(launcher, "w", encoding="utf-8") as fh:
            fh.write("#!/bin/sh\n")
            fh.write(f"exec {shlex.quote(self._real_executable)} -S -c {shlex.quote(_CLIENT)} "
                     f"{shlex.quote(path)} {shlex.quote(self._real_executable)} \"$@\"\n")
        os.chmod(launcher, 0o700)
        sys.executable = launcher
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.executable = self._real_executable
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGTERM)
                os.waitpid(self._pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
