"""Launcher: the program kfp.local starts for each step of a local run, and the warm process behind it.

kfp.local starts every step as ``python3 -m kfp.dsl.executor_main ...``. For ``--local`` runs
the generated script points kfp.local's Python executable at a small launcher program, which

- tells the run when the step starts and ends (with its exit status, or the signal that
  killed it, and the outcome the step runtime recorded), over a UNIX datagram socket;
- writes the step's output to ``step.log`` in the step's output folder, and also passes it
  on to kfp.local when the run is verbose;
- removes the folder kfp's command wrote the step's code to (kfp leaves it behind);
- runs the step in a child forked from a *warm* process when there is one: that process
  imported ``kfp.dsl.executor_main`` and the notebook's modules once, which saves about
  0.6 s plus the libraries' import time per step. Without it, the step starts a new
  interpreter in its own process group.

kfp.local stays the orchestrator: it sees a subprocess that exits as usual. The run can
stop every step it started (``terminate``), as it must on SIGINT or SIGTERM.

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
import threading
import time
import traceback
from typing import Any, Callable, Iterable

#: Module whose runs the launcher forks; every other command runs the real interpreter.
EXECUTOR_MODULE = "kfp.dsl.executor_main"

#: What the executor module imports, loaded ahead in the warm process.
EXECUTOR_DEPENDENCIES = ("kfp.dsl", "kfp.dsl.executor", "kfp.dsl.kfp_config", "kfp.dsl.utils")

#: Libraries that start threads or services on import and must not be imported before fork.
FORK_UNSAFE = frozenset({"tensorflow", "torch", "jax", "jaxlib", "keras", "ray", "pyspark", "grpc",
                         "dask", "distributed", "tensorflow_datasets", "mxnet", "cupy"})

#: The step's output, in its output folder.
LOG_NAME = "step.log"
#: The outcome the step runtime records, in its output folder (see ``runtime.step.STATUS_FILE_ENV``).
STATUS_NAME = "step-status.json"
#: The environment variable through which the step runtime learns where to record its outcome.
STATUS_FILE_ENV = "NBCONVERT_KFP_STEP_STATUS"

_HEADER = 8

# The launcher program kfp.local runs in place of python3.
# argv: events socket, warm socket ("" for none), real python, verbose ("1"/"0"), the step's args.
_CLIENT = r"""
import json, os, socket, sys, time
events_path, warm_path, real, verbose, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
task_dir = None
if args[:2] == ["-m", "kfp.dsl.executor_main"]:
    for flag, value in zip(args, args[1:]):
        if flag == "--executor_input":
            try:
                task_dir = os.path.dirname(json.loads(value)["outputs"]["outputFile"])
            except (ValueError, KeyError, TypeError):
                pass
def connect_warm():
    if not warm_path:
        return None
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(warm_path)
        return conn
    except OSError:
        return None
def send_request(conn, env, fds):
    payload = json.dumps({"argv": args, "cwd": os.getcwd(), "env": env}).encode()
    socket.send_fds(conn, [len(payload).to_bytes(8, "big")], fds)
    conn.sendall(payload)
def read_line(conn, buffer):
    while b"\n" not in buffer[0]:
        chunk = conn.recv(64)
        if not chunk:
            return None
        buffer[0] += chunk
    line, buffer[0] = buffer[0].split(b"\n", 1)
    return line.decode()
def exit_code(code):
    os._exit(code if code >= 0 else 128 - code)
if not task_dir:
    conn = connect_warm() if args[:2] == ["-m", "kfp.dsl.executor_main"] else None
    if conn is None:
        os.execv(real, [real, *args])
    send_request(conn, dict(os.environ), [0, 1, 2])
    buffer = [b""]
    read_line(conn, buffer)
    status = read_line(conn, buffer)
    exit_code(int(status) if status and status.lstrip("-").isdigit() else 1)
def code_folder():
    # kfp's command writes the step's code to a fresh `mktemp -d` folder and leaves it
    for flag, value in zip(args, args[1:]):
        folder = os.path.dirname(value)
        if flag == "--component_module_path" and os.path.basename(folder).startswith("tmp."):
            return folder
    return None
def clean_up():
    folder = code_folder()
    try:
        if folder and set(os.listdir(folder)) <= {"ephemeral_component.py", "__pycache__"}:
            import shutil
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass
import signal
signal.signal(signal.SIGTERM, lambda *_: (clean_up(), os._exit(128 + signal.SIGTERM)))
os.makedirs(task_dir, exist_ok=True)
log_path = os.path.join(task_dir, "step.log")
status_path = os.path.join(task_dir, "step-status.json")
try:
    os.remove(status_path)
except OSError:
    pass
events = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def event(**fields):
    try:
        events.sendto(json.dumps(fields).encode(), events_path)
    except OSError:
        pass
env = dict(os.environ, NBCONVERT_KFP_STEP_STATUS=status_path)
read_end, write_end = os.pipe()
conn, proc, buffer = connect_warm(), None, [b""]
if conn is not None:
    send_request(conn, env, [0, write_end, write_end])
    line = read_line(conn, buffer)
    pid = int(line) if line and line.isdigit() else None
else:
    import subprocess
    proc = subprocess.Popen([real, *args], stdin=0, stdout=write_end, stderr=write_end, env=env,
                            start_new_session=True)
    pid = proc.pid
os.close(write_end)
started = time.monotonic()
event(kind="start", task_dir=task_dir, log=log_path, pid=pid, client=os.getpid(), warm=conn is not None,
      code_folder=code_folder())
with open(log_path, "ab") as log:
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        log.write(chunk)
        log.flush()
        if verbose:
            view = memoryview(chunk)
            while view:
                view = view[os.write(1, view):]
if conn is not None:
    status = read_line(conn, buffer)
    code = int(status) if status and status.lstrip("-").isdigit() else 1
else:
    code = proc.wait()
def remove_partials():
    # a step killed while saving a value leaves its scratch folder (".partial-*") in the output folder
    # (an output's folder is a child of the step's folder: look no deeper, outputs may hold many files)
    import shutil
    try:
        outputs = [e.path for e in os.scandir(task_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        outputs = []
    for folder in outputs:
        try:
            found = [e.path for e in os.scandir(folder) if e.name.startswith(".partial-")]
        except OSError:
            found = []
        for path in found:
            shutil.rmtree(path, ignore_errors=True)
remove_partials()
try:
    with open(status_path, encoding="utf-8") as fh:
        outcome = json.load(fh)
except (OSError, ValueError):
    outcome = None
if code == 0 and isinstance(outcome, dict) and outcome.get("state") == "running":
    # the process ended in the middle of the step's cells (os._exit) with status 0: the step did
    # not save its outputs, so it failed, as a step that calls sys.exit fails
    outcome.update(state="failed", error="the step's process exited (os._exit?) before the step's cells "
                   "finished: its outputs were not saved")
    message = f"[nbconvert-kfp] step {outcome.get('step')!r} failed in {outcome.get('where')}: {outcome['error']}\n"
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(message)
    if verbose:
        os.write(2, message.encode())
    code = 1
event(kind="end", task_dir=task_dir, log=log_path, code=code, outcome=outcome,
      seconds=round(time.monotonic() - started, 3))
clean_up()
exit_code(code)
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
    # The step imports the runtime its pipeline carries (the shared code bundle), as a cold start
    # does: forget the nbconvert_kfp this warm process imported (the script's, or an installed one).
    for name in [m for m in sys.modules if m == "nbconvert_kfp" or m.startswith("nbconvert_kfp.")]:
        del sys.modules[name]
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


def _monitor(conn: socket.socket, request: dict, fds: list[int]) -> int:
    """In a child of the warm process: fork the step, tell the launcher its pid, then its exit status
    (negative: the signal that killed it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        conn.close()
        code = 1
        try:
            code = _run_executor(request, fds)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    conn.sendall(f"{code}\n".encode())
    return 0


#: Seconds ``terminate`` waits for the launchers it stopped to end, before it removes what they left.
STOP_WAIT_SECONDS = 3.0
#: Seconds between two looks of the warm process at whether the run that started it is still there.
PARENT_CHECK_SECONDS = 1.0


def _orphaned(parent: int, directories: list[str]) -> None:
    """The run died without stopping the warm process (SIGKILL): stop the steps forked from it, remove the
    run's temporary folders and exit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpgid(0), signal.SIGTERM)
    except OSError:
        pass
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
    os._exit(0)


def _run_folders() -> list[str]:
    """The temporary folders of the run besides the launcher's, which its exit handlers would remove: the script
    tools' archive folder and kfp.local's empty workspace."""
    folders = [os.path.dirname(entry) for entry in sys.path
               if os.path.basename(entry).startswith("nbconvert-kfp-") and entry.endswith(".zip")
               and os.path.basename(os.path.dirname(entry)).startswith("nbconvert-kfp-")]
    try:
        from kfp.local import config

        workspace = getattr(config.LocalExecutionConfig.instance, "workspace_root", None)
        if workspace and os.path.basename(workspace).startswith("kfp-workspace-"):
            folders.append(workspace)
    except (ImportError, AttributeError):
        pass
    return folders


def _serve(server: socket.socket, statements: list[str], parent: int | None = None,
           directories: list[str] | None = None) -> None:
    _preload(statements)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    import select

    while True:
        if parent is not None:
            ready, _, _ = select.select([server], [], [], PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                _orphaned(parent, directories or [])
            if not ready:
                continue
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
                code = _monitor(conn, request, fds)
            finally:
                os._exit(code)
        conn.close()
        for fd in fds:
            os.close(fd)


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): be sent SIGTERM when the parent dies, even by SIGKILL (Linux only;
    elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _alive(pid: Any) -> bool:
    """Whether a process of that id is running (an ended one its parent has not reaped yet is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.path.isdir("/proc/self"):  # Linux: a process's state
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return fh.read().rpartition(b")")[2].split()[:1] not in ([b"Z"], [b"X"])
        except FileNotFoundError:
            return False
        except OSError:
            return True
    try:  # elsewhere: whether the id is taken
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_code_folder(folder: Any) -> None:
    """Remove the ``mktemp -d`` folder kfp's command wrote a step's code to, if it holds nothing else."""
    if not isinstance(folder, str) or not os.path.basename(folder).startswith("tmp."):
        return
    try:
        if set(os.listdir(folder)) <= {"ephemeral_component.py", "__pycache__"}:
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass


def _terminate_group(pid: int | None) -> None:
    if not pid:
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            continue


#: The longest path a UNIX socket may have on Linux (``sun_path`` holds 108 bytes, the last one NUL).
SOCKET_PATH_LIMIT = 107
#: The longest socket name the launcher uses inside its folder (``/events.sock``).
_LONGEST_SOCKET = len("/events.sock")


def _socket_folder() -> str:
    """A new private temporary folder whose sockets' paths fit a UNIX socket address: in the temporary
    directory (``TMPDIR``) when its path is short enough, else in /tmp."""
    directory = tempfile.mkdtemp(prefix="nbconvert-kfp-")
    if len(os.fsencode(directory)) + _LONGEST_SOCKET <= SOCKET_PATH_LIMIT or not os.path.isdir("/tmp"):
        return directory
    os.rmdir(directory)
    return tempfile.mkdtemp(prefix="nbconvert-kfp-", dir="/tmp")


class StepLauncher:
    """Context manager that puts the launcher between kfp.local and its steps for a local run.

    ``preload``: the import statements the warm process runs first. ``warm``: fork steps from
    a warm process (when the platform can fork and pass file descriptors). ``verbose``: pass the
    steps' output on to kfp.local as well as to each ``step.log``. ``on_event``: called, from a
    background thread, with each step event: ``{"kind": "start" | "end", "task_dir", "log", ...}``;
    an end event has ``code`` (negative: the signal that killed the step), ``seconds`` (the step's
    wall time) and ``outcome``, the step runtime's record (or None).
    """

    def __init__(self, preload: Iterable[str] = (), warm: bool = True, verbose: bool = True,
                 on_event: Callable[[dict[str, Any]], None] | None = None):
        self.preload = list(preload)
        self.supported = hasattr(socket, "AF_UNIX") and hasattr(os, "fork") and sys.platform.startswith("linux")
        self.warm = warm and self.supported and hasattr(socket, "send_fds")
        self.verbose = verbose
        self.on_event = on_event
        self._directory: str | None = None
        self._pid: int | None = None
        self._events: socket.socket | None = None
        self._listener: threading.Thread | None = None
        self._running: dict[str, dict[str, Any]] = {}
        self._settling: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()
        self._real_executable = sys.executable

    @property
    def warm_pid(self) -> int | None:
        """The warm process's pid (None without one)."""
        return self._pid

    def __enter__(self) -> StepLauncher:
        if not self.supported:
            return self
        self._directory = _socket_folder()
        warm_path = ""
        if self.warm:
            warm_path = os.path.join(self._directory, "warm.sock")
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(warm_path)
            server.listen(64)
            sys.stdout.flush()
            sys.stderr.flush()
            # Fork before any thread starts: the warm process has its own process group, so that
            # terminating the run reaches the steps it forked.
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                try:
                    os.setpgid(0, 0)
                    _serve(server, self.preload, parent, [self._directory, *_run_folders()])
                finally:
                    os._exit(0)
            try:  # as the child does: whichever runs first puts it in its group
                os.setpgid(pid, pid)
            except OSError:
                pass
            self._pid = pid
            server.close()
        events_path = os.path.join(self._directory, "events.sock")
        self._events = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._events.bind(events_path)
        self._listener = threading.Thread(target=self._listen, name="nbconvert-kfp-events", daemon=True)
        self._listener.start()
        launcher = os.path.join(self._directory, "step-python")
        with open(launcher, "w", encoding="utf-8") as fh:
            fh.write("#!/bin/sh\n")
            fh.write(f"exec {shlex.quote(self._real_executable)} -S -c {shlex.quote(_CLIENT)} "
                     f"{shlex.quote(events_path)} {shlex.quote(warm_path)} "
                     f"{shlex.quote(self._real_executable)} {'1' if self.verbose else '0'} \"$@\"\n")
        os.chmod(launcher, 0o700)
        sys.executable = launcher
        return self

    def _listen(self) -> None:
        while True:
            try:
                data = self._events.recv(1 << 20)
            except OSError:
                return
            if data == b"stop":
                return
            with self._lock:
                settled = self._settling.pop(data, None)
            if settled is not None:
                settled.set()
                continue
            try:
                event = json.loads(data)
            except ValueError:
                continue
            with self._lock:
                if event.get("kind") == "start":
                    self._running[event.get("task_dir", "")] = event
                elif event.get("kind") == "end":
                    self._running.pop(event.get("task_dir", ""), None)
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:  # a display problem must not stop the run
                    pass

    def settle(self, timeout: float = 5.0) -> None:
        """Return once every step event sent before this call has been handled (``on_event`` called): a run
        that ends reads its steps' end events first, also when the launcher serves several runs."""
        if self._events is None or self._listener is None or not self._listener.is_alive():
            return
        done, token = threading.Event(), f"settle {threading.get_ident()} {time.monotonic_ns()}".encode()
        with self._lock:
            self._settling[token] = done
        try:
            self._events.sendto(token, self._events.getsockname())  # queued after every earlier event
        except OSError:
            return
        done.wait(timeout)

    def terminate(self) -> None:
        """Stop every running step and the warm process (SIGTERM to each process group)."""
        with self._lock:
            running = list(self._running.values())
        for event in running:
            pid = event.get("pid")
            if pid and event.get("warm"):  # forked from the warm process, in its process group
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            else:  # a new interpreter in a process group of its own
                _terminate_group(pid)
        if self._pid is not None:
            _terminate_group(self._pid)
        for event in running:
            try:
                os.kill(event["client"], signal.SIGTERM)
            except (KeyError, OSError, TypeError):
                pass
        # each launcher removes its step's code folder as it ends; one it could not remove is removed here
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for event in running:
            while _alive(event.get("client")) and time.monotonic() < deadline:
                time.sleep(0.02)
            _remove_code_folder(event.get("code_folder"))

    def __exit__(self, *exc_info: object) -> None:
        sys.executable = self._real_executable
        if self._pid is not None:
            _terminate_group(self._pid)
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
            self._pid = None
        if self._events is not None:
            try:
                self._events.sendto(b"stop", self._events.getsockname())
            except OSError:
                pass
            if self._listener is not None:
                self._listener.join(timeout=5)
            self._events.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
