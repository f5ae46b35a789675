"""HTTP POSTs of the notify layer (alert webhooks, Pushgateway pushes), with retries.

A 03:00 alert that a gateway restart swallowed is an alert nobody reads, so transient failures
are retried with urllib3's `Retry`: a connection that could not be made, and the answers that
mean "try again" (429, 502, 503, 504), up to three times, at once and then after 1 s and 2 s. Any
other error answer is final at once (resending what the receiver rejected changes nothing), and
so is a read that failed after the request was sent (the receiver may have acted on it; alerts
are sent at most once per attempt that reached it). `Retry-After` is not honoured: a run must
not wait on a receiver's say-so. Worst case, a dead receiver costs four connect timeouts and
3 s of backoff.
"""

from __future__ import annotations

from collections.abc import Mapping

import urllib3
from urllib3.util.retry import Retry

RETRIES = Retry(
    total=3,
    connect=3,
    read=False,
    status=3,
    other=0,
    backoff_factor=0.5,
    status_forcelist=(429, 502, 503, 504),
    allowed_methods=None,  # POST included: see the module docstring
    raise_on_status=False,
    respect_retry_after_header=False,
)


class PostFailed(Exception):
    """The receiver answered with an error, after any retries; internal to the notify layer."""


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> None:
    """POST `body` to `url`; raise PostFailed on an error answer, urllib3's errors otherwise."""
    with urllib3.PoolManager(retries=RETRIES, timeout=urllib3.Timeout(connect=timeout, read=timeout)) as http:
        response = http.request("POST", url, body=body, headers=dict(headers), redirect=False)
    if response.status >= 300:
        raise PostFailed(f"HTTP Error {response.status}: {response.reason}")
