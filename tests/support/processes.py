"""Real processes for integration tests: free ports, ``tickwork run``, a ``redis-server``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TICKWORK = str(Path(sys.executable).with_name("tickwork"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Any,
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
    details: Callable[[], str] = lambda: "",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` (and
    whatever ``details()`` adds, e.g. a process's log tail) when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = details()
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}" + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


def http_get(port: int, path: str, *, timeout: float = 10) -> tuple[int, str]:
    """GET ``http://127.0.0.1:PORT/PATH``: the status code and the body (also for 4xx/5xx)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(port: int, line_prefix: str) -> float:
    """The value of the first ``/metrics`` line that starts with ``line_prefix``."""
    for line in http_get(port, "/metrics")[1].splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_prefix} not exported")


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def faketime(offset: str) -> dict[str, str]:
    """Environment for a process whose wall clock is ``offset`` off (``+1h``, ``-30m``) and
    whose monotonic clock is untouched — a host whose clock is wrong (Debian's libfaketime,
    preloaded directly so that signals reach the process; ``make faketime`` installs it)."""
    libraries = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not libraries:
        raise RuntimeError("libfaketime is not installed; run `make faketime`")
    return {
        "LD_PRELOAD": str(libraries[0]),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def start_tickwork(
    args: list[str], *, env: dict[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """``tickwork ARGS`` with the repo importable; stderr goes to ``log_path``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWORK_")}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    stderr = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [TICKWORK, *args],
            cwd=REPO,
            env=full_env,
            stdout=stderr,
            stderr=stderr,
        )
    finally:
        if log_path:
            stderr.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1 with AOF persistence in ``directory``."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        tls: bool = False,
        unix_socket: bool = False,
        appendfsync: str = "always",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run `make redis-server`")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.unix_socket = unix_socket
        self.appendfsync = appendfsync
        self.extra_args = extra_args  # e.g. --replicaof, --cluster-enabled
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def unix_url(self) -> str:
        """The ``unix://`` URL of the server's socket (``unix_socket=True``)."""
        return f"unix://{self.socket_path}?db=0"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            ca = self.directory / "ca.crt"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _make_certificates(self) -> list[str]:
        """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
        d = self.directory
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        if not (d / "server.crt").exists():
            run(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=tickwork-test-ca",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                str(d / "ca.key"),
                "-out",
                str(d / "ca.crt"),
            )
            run(
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(d / "server.key"),
                "-out",
                str(d / "server.csr"),
            )
            # What a strict X.509 check wants of a server certificate (Python 3.13's default
            # context sets VERIFY_X509_STRICT): the issuer's key id, not a CA, server use.
            (d / "ext.cnf").write_text(
                "subjectAltName=IP:127.0.0.1\n"
                "authorityKeyIdentifier=keyid,issuer\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
            )
            run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.crt"))  # fmt: skip
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(d / "server.crt"), "--tls-key-file", str(d / "server.key"),
            "--tls-ca-cert-file", str(d / "ca.crt"), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        if self.unix_socket:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self.tls:
            args = [a for a in args if a != str(self.port) and a != "--port"]
            args += self._make_certificates()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(self._answers, timeout=10, what=f"redis-server on port {self.port}")
        except AssertionError:
            self.stop(sig=signal.SIGKILL)  # never leave a half-started server behind
            raise

    def _answers(self) -> bool:
        """True once the server answers PING (after AUTH, over TLS when configured)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                if not self.tls:
                    return self._ping(raw)
                context = ssl.create_default_context(cafile=str(self.directory / "ca.crt"))
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    return self._ping(sock)
        except OSError:
            return False

    def _ping(self, sock: socket.socket) -> bool:
        if self.password:
            sock.sendall(f"AUTH {self.password}\r\n".encode())
            sock.recv(64)
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
