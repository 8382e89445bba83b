"""The bounds of one request to a KFP host (nbconvert_kfp.script.cluster.transport), against hosts on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest

from fakekfp import FakeKFP, SilentHost
from nbconvert_kfp.script.cluster.transport import DEADLINE_ENV, DeadlineExceeded, Limits, bound, exchange


def test_no_attempt_starts_after_the_deadline_however_often_urllib3_would_retry():
    from kfp_server_api.rest import urllib3

    pool = urllib3.PoolManager(retries=urllib3.Retry(total=5, connect=5, read=5))
    with SilentHost() as host:
        url = host.url.replace("https://", "http://") + "/apis/v2beta1/healthz"
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            exchange(lambda timeout: pool.request("GET", url, timeout=timeout, preload_content=False),
                     Limits(connect=0.3, read=0.3, deadline=0.5))
        assert time.monotonic() - started < 0.5 + 0.3
        time.sleep(0.6)  # a retry the worker thread started after the deadline would have connected by now
        # the first attempt (its read times out at 0.3 s) and at most one retry, cut to the 0.2 s left
        assert 1 <= host.accepted <= 2


class _Answered:
    """A urllib3 response whose body is already read: ``exchange`` returns it at once."""

    def read1(self, size: int, decode_content: bool = True) -> bytes:
        return b""

    def release_conn(self) -> None:
        pass


def test_a_retry_due_after_the_deadline_says_the_deadline_passed_as_any_late_answer_does():
    attempts = []
    exchange(lambda timeout: attempts.append(timeout) or _Answered(), Limits(connect=0.1, read=0.1, deadline=0.2))
    [first] = attempts
    assert first.clone().read_timeout <= 0.2  # an attempt before the deadline: its timeouts cut to the time left
    time.sleep(0.25)
    with pytest.raises(DeadlineExceeded, match=r"^no complete answer within 0\.2 s \(the host is too slow"):
        first.clone()  # urllib3 clones the timeout for each retry


def _request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nbconvert-kfp-request"]


@pytest.mark.parametrize("mode", ["trickle-headers", "trickle"])
def test_a_bound_client_hangs_up_at_the_deadline_on_a_host_that_trickles(monkeypatch, mode):
    import kfp_server_api

    monkeypatch.setenv(DEADLINE_ENV, "0.5")
    with FakeKFP() as host:
        host.transport = mode  # a byte every 0.02 s: no read ever times out
        client = kfp_server_api.ApiClient(kfp_server_api.Configuration(host=host.url))
        bound(client.rest_client)
        before = set(_request_threads())
        with pytest.raises(DeadlineExceeded, match="within 0.5 s"):
            client.rest_client.GET(host.url + "/apis/v2beta1/healthz")
        left = time.monotonic() + 2
        while set(_request_threads()) - before and time.monotonic() < left:
            time.sleep(0.02)
        assert not set(_request_threads()) - before, "the request's thread still reads from the host"
