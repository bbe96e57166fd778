"""Does a service answer its health path, and if not, why.

The probe is evidence for the alert, not a trigger: a restore is proven by reading
the policy back. Right after a restore, Google's front end can keep answering 403
for minutes while IAM propagates (PITFALLS 16), so a 403 is reported, never
retried here and never a reason to restore again; the caller decides whether to
look again later.

The 403 and 404 pages of Google's front end are HTML error pages ("Error:
Forbidden ... Your client does not have permission to get URL"). An application
that answers 403 itself usually does not look like that, so the detail tells the
two apart. Ingress-restricted services refuse outside callers at the same front
end (404, formerly 403), which the detail mentions when the page fits.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import ReadTimeoutError

from watchdog.model import Probe, ProbeResult

# Enough to recognise an error page; a health body larger than this is not read.
_BODY_LIMIT = 8192
# Same-host redirects only (e.g. /health -> /health/); another host is not the
# service we were asked about.
_MAX_REDIRECTS = 3

_FRONT_END_403 = (
    "403 from Google's front end: the invoker IAM check refused an unauthenticated "
    "request (right after a restore, IAM can take minutes to propagate; an "
    "ingress setting that refuses outside traffic can also answer this)"
)
_APP_403 = "403 from the service itself, not from Google's front end"
_FRONT_END_404 = (
    "404 from Google's front end: the path does not exist, or the service's ingress "
    "setting refuses traffic from outside (internal / internal and load balancing)"
)


def probe(
    uri: str,
    path: str,
    *,
    timeout: float = 5.0,
    session: requests.Session | None = None,
) -> Probe:
    """GET `uri` + `path` once and classify the answer; never raises for the network.

    NB: `timeout` bounds the connection and each read, not name resolution
    (getaddrinfo cannot be interrupted) nor the total of a slowly trickled body.
    """
    if not uri:
        # A service that is not ready yet (or failed to deploy) has no URL.
        return Probe(ProbeResult.SKIPPED, detail="the service has no URL yet")
    url = uri.rstrip("/") + path
    http = session or requests.Session()
    started = time.monotonic()
    try:
        return _get(http, url, timeout, started)
    except requests.Timeout:
        return _unreachable(f"timeout after {timeout:g}s", started)
    except requests.ConnectionError as error:
        # requests reports a read timeout inside the body as a ConnectionError.
        if any(isinstance(e, ReadTimeoutError) for e in _causes(error)):
            return _unreachable(f"timeout after {timeout:g}s", started)
        return _unreachable(_describe_connection_error(error, url), started)
    except requests.RequestException as error:
        # Invalid URL, too many redirects, broken chunked body: the service did not
        # give a usable answer.
        return _unreachable(f"{type(error).__name__}: {error}", started)
    finally:
        if session is None:
            http.close()


def _get(http: requests.Session, url: str, timeout: float, started: float) -> Probe:
    """Follow same-host redirects, then classify the final response."""
    host = urlsplit(url).netloc
    for _ in range(_MAX_REDIRECTS + 1):
        with http.get(
            url,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            headers={"User-Agent": "run-public-watchdog health probe"},
        ) as response:
            location = response.headers.get("Location")
            if response.is_redirect and location:
                target = urljoin(url, location)
                if urlsplit(target).netloc != host:
                    return Probe(
                        ProbeResult.ERROR,
                        status=response.status_code,
                        detail=f"{response.status_code}: redirected to another host "
                        f"({urlsplit(target).netloc}); not followed",
                        seconds=time.monotonic() - started,
                    )
                url = target
                continue
            body = _read_start(response)
            return _classify(response.status_code, body, started)
    return Probe(
        ProbeResult.ERROR,
        detail=f"more than {_MAX_REDIRECTS} redirects",
        seconds=time.monotonic() - started,
    )


def _read_start(response: requests.Response) -> str:
    """The first few KiB of the body, decoded leniently."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= _BODY_LIMIT:
            break
    return b"".join(chunks)[:_BODY_LIMIT].decode("utf-8", "replace")


def _classify(status: int, body: str, started: float) -> Probe:
    seconds = time.monotonic() - started
    if 200 <= status < 300:
        return Probe(ProbeResult.OK, status=status, detail="", seconds=seconds)
    front_end = _is_google_error_page(body)
    if status == 403:
        detail = _FRONT_END_403 if front_end else _APP_403
        return Probe(
            ProbeResult.FORBIDDEN, status=status, detail=detail, seconds=seconds
        )
    if status == 404 and front_end:
        detail = _FRONT_END_404
    else:
        detail = f"{status} from the service"
    return Probe(ProbeResult.ERROR, status=status, detail=detail, seconds=seconds)


def _is_google_error_page(body: str) -> bool:
    """Whether a body looks like the HTML error page of Google's front end.

    NB: a heuristic. An application that serves its own HTML page saying
    "Forbidden" is taken for the front end; the status is right either way.
    """
    text = body.lower()
    if "<html" not in text and "<!doctype html" not in text:
        return False
    return any(
        marker in text
        for marker in (
            "forbidden",
            "does not have permission",
            "error: page not found",
            "was not found on this server",
        )
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: causes, contexts, urllib3 reasons, arguments."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(
            e
            for e in (
                current.__cause__,
                current.__context__,
                getattr(current, "reason", None),
                *current.args,
            )
            if isinstance(e, BaseException)
        )


def _describe_connection_error(error: requests.ConnectionError, url: str) -> str:
    """Name the cause (DNS, refused, reset) from the exception chain."""
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return f"DNS lookup failed for {urlsplit(url).hostname}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    text = str(error)
    if "Name or service not known" in text or "Failed to resolve" in text:
        return f"DNS lookup failed for {urlsplit(url).hostname}"
    if "Connection refused" in text:
        return "connection refused"
    return f"connection failed: {type(error).__name__}"


def _unreachable(reason: str, started: float) -> Probe:
    return Probe(
        ProbeResult.UNREACHABLE, detail=reason, seconds=time.monotonic() - started
    )
