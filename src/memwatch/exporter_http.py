"""A very small HTTP/1.1 server on asyncio, enough for a Prometheus scrape endpoint.

Why not ``prometheus_client.start_http_server``: it runs a thread-per-request WSGI server that
cannot be stopped cleanly from asyncio, and it would tie the exporter to the client's default
registry. This server answers GET/HEAD, one request per connection (``Connection: close``),
with bounded header size and a read timeout so a slow or hostile client cannot pin it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
"""Requests with a longer request line + headers get 431; Prometheus sends well under 1 KiB."""
READ_TIMEOUT_S = 10.0
"""A client that has not finished its headers by then is dropped."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a handler needs of a request: method, path (no query string), query, headers."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Lower-cased names; a repeated header keeps its values joined by ', '."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response; the server adds Content-Length, Connection and Date-free framing."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[HttpRequest], HttpResponse]


def _plain(status: HTTPStatus, text: str | None = None) -> HttpResponse:
    return HttpResponse(int(status), ((text or status.phrase) + "\n").encode())


def parse_request_head(head: bytes) -> HttpRequest | HttpResponse:
    """Parse the request line and headers; a malformed request yields the error response instead."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return _plain(HTTPStatus.BAD_REQUEST)
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _plain(HTTPStatus.BAD_REQUEST, "Bad Request: expected 'METHOD /path HTTP/1.x'")
    method, target, _version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return _plain(HTTPStatus.BAD_REQUEST, "Bad Request: malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path, _, query = target.partition("?")
    return HttpRequest(method=method, path=path, query=query, headers=headers)


def _encode_response(response: HttpResponse, *, head_only: bool) -> bytes:
    status = HTTPStatus(response.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
    ]
    lines.extend(f"{k}: {v}" for k, v in response.headers.items())
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


async def _read_head(reader: asyncio.StreamReader) -> bytes | HttpResponse | None:
    """The bytes up to the blank line, an error response, or None if the client went away."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    except asyncio.LimitOverrunError:
        return _plain(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        return None


def _dispatch(handler: Handler, request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(int(HTTPStatus.METHOD_NOT_ALLOWED), b"Method Not Allowed\n",
                            headers={"Allow": "GET, HEAD"})
    try:
        return handler(request)
    except Exception:  # a bug in a handler must cost one response, not the server
        log.exception("memwatch exporter: handler failed for %s", request.path)
        return _plain(HTTPStatus.INTERNAL_SERVER_ERROR)


async def start_http_server(host: str, port: int, handler: Handler) -> asyncio.Server:
    """Listen on host:port (port 0: any free port) and answer each request with ``handler``.

    The handler runs on the event loop: it must be quick (building an exposition is milliseconds).
    Raises OSError when the address cannot be bound.
    """

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await _read_head(reader)
            if head is None:
                return
            head_only = False
            if isinstance(head, HttpResponse):
                response = head
            else:
                parsed = parse_request_head(head[:-4])
                if isinstance(parsed, HttpResponse):
                    response = parsed
                else:
                    head_only = parsed.method == "HEAD"
                    response = _dispatch(handler, parsed)
            writer.write(_encode_response(response, head_only=head_only))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT_S)

    return await asyncio.start_server(on_connection, host, port, limit=MAX_HEADER_BYTES,
                                      reuse_address=True)
