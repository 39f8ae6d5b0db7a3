"""A real S3 API on this machine, for the tests and the ``remote`` benchmark: moto's server
(``moto.server.ThreadedMotoServer``, ``pip install "moto[server]"``) on 127.0.0.1, behind a
TCP relay that counts every byte clients send it and records each HTTP request (method, target,
header and body sizes), so that "bytes sent" is measured on the wire, headers included.

    with LocalS3() as s3:                 # a fresh bucket, s3.bucket, on a free port
        url = f"s3://{s3.bucket}/run"     # s3.endpoint goes to fsspec / boto3 / S3_ENDPOINT
        ...
        s3.bytes_received, s3.requests, s3.objects("run/")

Nothing here is used by fasttb's writers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


class Request(NamedTuple):
    """One HTTP request as the server received it."""

    method: str
    target: str
    header_bytes: int
    body_bytes: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingProxy:
    """Relays TCP connections to ``127.0.0.1:upstream_port``, counting the bytes clients send
    and parsing them as HTTP/1.1 requests (Content-Length bodies) to record each one."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.bytes_received = 0
        self.requests: List[Request] = []
        self._sockets: List[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    def reset(self) -> None:
        """Start counting again from zero."""
        with self._lock:
            self.bytes_received = 0
            self.requests = []

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                server.settimeout(None)
            except OSError:  # the server is down: the client sees its connection closed
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            down = threading.Thread(target=self._downstream, args=(server, client), daemon=True)
            down.start()
            threading.Thread(target=self._upstream, args=(client, server, down), daemon=True).start()

    @staticmethod
    def _close_both(a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = server.recv(1 << 16)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._close_both(server, client)

    def _upstream(self, client: socket.socket, server: socket.socket, down: threading.Thread) -> None:
        buffer = b""
        head: Optional[tuple] = None
        try:
            while True:
                data = client.recv(1 << 16)
                if not data:
                    break
                server.sendall(data)
                with self._lock:
                    self.bytes_received += len(data)
                buffer += data
                while True:
                    if head is None:
                        end = buffer.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        lines = buffer[:end].split(b"\r\n")
                        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
                        method, target = (lines[0].split(b" ") + [b"", b""])[:2]
                        head = (method.decode(), target.decode(), end + 4, int(fields.get(b"content-length", b"0")))
                        buffer = buffer[end + 4:]
                    if len(buffer) < head[3]:
                        break
                    buffer = buffer[head[3]:]
                    with self._lock:
                        self.requests.append(Request(*head))
                    head = None
        except OSError:
            pass
        finally:
            self._close_both(client, server)
            down.join(10)
            with self._lock:
                for s in (client, server):
                    if s in self._sockets:
                        self._sockets.remove(s)
            client.close()
            server.close()

    def cut(self) -> None:
        """Cut every relayed connection, as a server that goes down does."""
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        self._closed = True
        self._listener.close()
        self.cut()  # the relay threads close the sockets


class LocalS3:
    """moto's S3 server and a counting proxy in front of it, with one fresh bucket.

    ``endpoint`` is the proxy's URL (what clients should use); ``server_endpoint`` is moto's own.
    ``stop_server()`` / ``start_server()`` take the server down and bring it back on the same
    port, its objects kept. Sets AWS test credentials in ``os.environ`` while running (restored
    by ``stop()``), so that boto3, s3fs and child processes find them.
    """

    def __init__(self, bucket: str = "fasttb-test") -> None:
        self.bucket = bucket
        self.port = 0
        self._server: Any = None
        self.proxy: Optional[CountingProxy] = None
        self._saved_env: Dict[str, Optional[str]] = {}

    @property
    def endpoint(self) -> str:
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def server_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LocalS3":
        """Start the server and the proxy, and create the bucket."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        for key, value in CREDENTIALS.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.proxy = CountingProxy(self.port)
        import urllib.request

        # The server's objects live in this process: a fresh start for every LocalS3.

        urllib.request.urlopen(urllib.request.Request(f"{self.server_endpoint}/moto-api/reset", method="POST"),
                               timeout=10).read()
        self.client().create_bucket(Bucket=self.bucket)
        self.proxy.reset()
        return self

    def stop_server(self) -> None:
        """Take the server down, its connections too (its objects are kept in this process)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.proxy is not None:
            self.proxy.cut()  # the server's threads may still serve open keep-alive connections

    def start_server(self) -> None:
        """Bring the server back on its port."""
        from moto.server import ThreadedMotoServer

        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
                self._server.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the proxy and the server; restore the environment."""
        if self.proxy is not None:
            self.proxy.close()
        self.stop_server()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def __enter__(self) -> "LocalS3":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def client(self, direct: bool = True) -> Any:
        """A boto3 S3 client (``direct``: to the server itself, not counted by the proxy)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.server_endpoint if direct else self.endpoint,
                            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))

    def storage_options(self, fast_failure: bool = False) -> Dict[str, Any]:
        """fsspec's storage_options for s3fs through the proxy (``fast_failure``: one attempt per
        upload, so that an outage shows at once)."""
        options: Dict[str, Any] = {"client_kwargs": {"endpoint_url": self.endpoint}}
        if fast_failure:
            options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 10}
        return options

    @property
    def bytes_received(self) -> int:
        """Bytes clients sent through the proxy (request lines, headers and bodies)."""
        assert self.proxy is not None
        return self.proxy.bytes_received

    @property
    def requests(self) -> List[Request]:
        assert self.proxy is not None
        return list(self.proxy.requests)

    def objects(self, prefix: str = "") -> Dict[str, bytes]:
        """Every object of the bucket under ``prefix``, read directly from the server."""
        client = self.client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
        return out
