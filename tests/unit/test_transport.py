"""The bounds of one request to a KFP host (nbconvert_kfp.script.cluster.transport), against hosts on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from fakekfp import SilentHost
from nbconvert_kfp.script.cluster.transport import DeadlineExceeded, Limits, exchange


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
