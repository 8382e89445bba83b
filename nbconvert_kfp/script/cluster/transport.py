"""Transport: every request to the KFP host bounded in time and in size.

kfp.Client sets no time limit, and urllib3's read timeout restarts at each byte, so a host that
trickles bytes, or never answers, holds a caller for ever; it also reads a whole answer into
memory, however large, after undoing any gzip encoding. ``bound`` wraps the REST client of a
kfp.Client so that each request has a connect and a read timeout, a deadline for the whole
exchange (connect, headers and body), and a cap on the decoded size of the answer. The limits
are ``Limits.from_environment()``: defaults, or the ``NBCONVERT_KFP_HTTP_DEADLINE`` (seconds) and
``NBCONVERT_KFP_MAX_RESPONSE`` (bytes) settings. urllib3's retries of a request stay within its
deadline too: each attempt's timeouts are cut to the time left.

A caller with a time budget of its own (a deploy request of the Jupyter server) runs its work
``within(deadline)``: every request then ends by that deadline, whatever the limits say, and a
request started after it fails at once (``BudgetExceeded``), so the caller's thread is free when its
budget ends. Standard library and kfp only; the generated script carries it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from ..exceptions import ScriptError

#: Environment settings: seconds one request may take in all, and the largest answer in bytes.
DEADLINE_ENV = "NBCONVERT_KFP_HTTP_DEADLINE"
MAX_RESPONSE_ENV = "NBCONVERT_KFP_MAX_RESPONSE"
#: Chunk size of the body reads; each read returns as soon as any data arrived.
_CHUNK = 64 * 1024


class DeadlineExceeded(ScriptError, TimeoutError):
    """The host did not finish its answer within the deadline."""


class BudgetExceeded(DeadlineExceeded):
    """The time the caller gave its work (``within``) ran out."""


class ResponseTooLarge(ScriptError):
    """The host's answer is larger than the cap."""


#: The connections an exchange's worker thread has read an answer from (``exchange``), in that thread's context.
_READING: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("nbconvert_kfp_reading", default=None)
#: The ``time.monotonic()`` by which the current work's requests must end (``within``), or None.
_BUDGET: contextvars.ContextVar[float | None] = contextvars.ContextVar("nbconvert_kfp_budget", default=None)


@contextlib.contextmanager
def within(deadline: float) -> Iterator[None]:
    """Within the block, every request made in this context ends by ``deadline`` (a ``time.monotonic()``
    value, or an earlier one an enclosing block set)."""
    current = _BUDGET.get()
    token = _BUDGET.set(deadline if current is None else min(current, deadline))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def time_left() -> float | None:
    """Seconds left of the current work's budget (``within``; 0 when it ran out), or None without one."""
    deadline = _BUDGET.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@dataclass(frozen=True)
class Limits:
    """The bounds of one request: connect and read timeouts, the whole deadline, the answer cap."""

    connect: float = 15.0
    read: float = 60.0
    deadline: float = 120.0
    max_response: int = 64 * 1024 * 1024

    @classmethod
    def from_environment(cls) -> "Limits":
        """The defaults, with the deadline and the cap the environment sets (invalid settings are ignored)."""
        defaults = cls()
        deadline = _positive(os.environ.get(DEADLINE_ENV), float) or defaults.deadline
        cap = _positive(os.environ.get(MAX_RESPONSE_ENV), int) or defaults.max_response
        return cls(min(defaults.connect, deadline), min(defaults.read, deadline), deadline, cap)

    def cut_to(self, seconds: float) -> "Limits":
        """These limits, with no time longer than ``seconds``."""
        return replace(self, connect=min(self.connect, seconds), read=min(self.read, seconds),
                       deadline=min(self.deadline, seconds))


def _positive(text: str | None, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text) if text else None
    except ValueError:
        return None
    return value if value is not None and 0 < value < float("inf") else None


def _size(cap: int) -> str:
    return f"{cap / 1024 / 1024:g} MiB" if cap >= 1024 * 1024 else f"{cap} bytes"


def _late(limits: Limits) -> str:
    """What a request that passed its deadline says, wherever that was noticed."""
    return (f"no complete answer within {limits.deadline:g} s (the host is too slow, or not a KFP API; "
            f"{DEADLINE_ENV} sets the deadline)")


def _read_body(response: Any, limits: Limits, deadline: float) -> bytes:
    """The decoded body of a urllib3 response, within the deadline and the cap."""
    body = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise DeadlineExceeded(_late(limits))
        chunk = response.read1(_CHUNK, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limits.max_response:
            raise ResponseTooLarge(f"the answer is larger than {_size(limits.max_response)} ({MAX_RESPONSE_ENV} "
                                   "sets the limit)")


def exchange(send: Callable[[Any], Any], limits: Limits) -> Any:
    """Run ``send(timeout)`` (a urllib3 request that does not preload its body) and read its body,
    in a worker thread, for at most ``limits.deadline`` seconds; return the response with its body read.

    At the deadline the caller gets ``DeadlineExceeded`` at once, and the connection the worker thread reads
    from is shut down, so that thread ends too, also while a host trickles its headers (for pools ``bound``
    made; otherwise the socket's read timeout bounds each of its reads).
    """
    from kfp_server_api.rest import urllib3  # kfp's own HTTP library

    deadline = time.monotonic() + limits.deadline
    outcome: dict[str, Any] = {}
    reading: list[Any] = []  # the connections of this exchange's attempts (``bound`` makes pools record them)

    class Attempt(urllib3.Timeout):
        """The timeouts of each attempt urllib3 makes (it retries some failures): the limits, cut to the
        time left before the deadline, so the worker thread ends near the deadline, however often it retries;
        past the deadline no attempt starts (the host sees no request after the caller gave up)."""

        def clone(self) -> Any:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(_late(limits))  # a retry urllib3 would start late
            return urllib3.Timeout(connect=min(limits.connect, left), read=min(limits.read, left))

    def work() -> None:
        _READING.set(reading)  # this thread's own context
        try:
            response = send(Attempt(connect=limits.connect, read=limits.read))
            outcome["response"] = response
            body = _read_body(response, limits, deadline)
            response._body = body  # what ``response.data`` answers from now on
            response.release_conn()
            outcome["done"] = True
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error
            if outcome.get("response") is not None:
                try:
                    outcome["response"].close()  # a connection with an unread answer is not reused
                except Exception:
                    pass

    worker = threading.Thread(target=work, name="nbconvert-kfp-request", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        for connection in list(reading):  # ends the worker's read, of the headers or of the body
            _hang_up(connection)
        response = outcome.get("response")
        if response is not None:
            try:
                response.shutdown()  # the body's read, on a connection of a pool ``bound`` did not make
            except Exception:
                pass
        raise DeadlineExceeded(_late(limits))
    if "error" in outcome:
        error = outcome["error"]
        raise error
    return outcome["response"]


def _hang_up(connection: Any) -> None:
    """Shut a connection's socket down: a read blocked on it, in any thread, returns at once."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the OS socket, also under TLS
        except OSError:
            pass


def _watched(pool_class: type) -> type:
    """``pool_class`` whose connections, as they read an answer, are known to the exchange that sent it."""

    class Connection(pool_class.ConnectionCls):  # type: ignore[name-defined, misc]
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            reading = _READING.get()
            if reading is not None:
                reading.append(self)
            return super().getresponse(*args, **kwargs)

    return type(pool_class.__name__, (pool_class,), {"ConnectionCls": Connection})


class _BoundedPool:
    """A urllib3 pool manager whose ``request`` is an ``exchange``: bounded, its body read."""

    def __init__(self, pool: Any):
        self._pool = pool

    def request(self, method: str, url: str, *args: Any, preload_content: bool = True, timeout: Any = None,
                **kwargs: Any) -> Any:
        """The request, bounded by ``Limits.from_environment()`` and by the time left of the work's budget
        (``within``); the caller's timeout is replaced."""
        limits, left = Limits.from_environment(), time_left()
        if left is not None:
            if left <= 0:
                raise BudgetExceeded("the time given to the deployment ran out before this request")
            limits = limits.cut_to(left)
        try:
            return exchange(lambda limit: self._pool.request(method, url, *args, preload_content=False,
                                                             timeout=limit, **kwargs), limits)
        except DeadlineExceeded:
            if time_left() == 0:
                raise BudgetExceeded("the time given to the deployment ran out while the host was answering") \
                    from None
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def bound(rest_client: Any) -> None:
    """Make every request of a kfp_server_api REST client bounded (``exchange``)."""
    pool = getattr(rest_client, "pool_manager", None)
    if pool is not None and not isinstance(pool, _BoundedPool):
        classes = getattr(pool, "pool_classes_by_scheme", None)
        if isinstance(classes, dict):  # a host that trickles its headers is hung up on at the deadline too
            pool.pool_classes_by_scheme = {scheme: _watched(cls) for scheme, cls in classes.items()}
            pool.clear()  # pools made before this make connections of the new classes
        rest_client.pool_manager = _BoundedPool(pool)
