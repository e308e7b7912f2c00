"""moto's server, on 127.0.0.1, in this process (``ThreadedMotoServer``'s parts) or in a child process.

The child process is the default for the twin: moto keeps its state in module-level backends, and
``mock_aws`` (used by other tests in the same pytest run) resets those backends when it starts and
stops; a twin whose moto lives in its own process cannot be wiped that way, and moto's request
handling does not compete with in-process handlers (TensorFlow, say) for the GIL.

``python -m modelops_local.motoserver HOST PORT`` is the child: it binds, prints ``READY <port>``
(or ``ERROR <message>``) on stdout, and serves until its stdin closes (so it never outlives the twin).
The session token (the AWS access key id every request must be signed with) reaches it in its
environment (``MODELOPS_LOCAL_TOKEN``), never on its command line.

Either way moto's app sits behind ``modelops_local.guard.MotoGuard`` (loopback Host names, no
cross-origin request, the session's access key, no ``Access-Control-*`` header), and moto's own
global CORS is off: ``MOTO_DISABLE_GLOBAL_CORS`` is read once, when ``moto.settings`` is imported
(in this process that may have happened long before), so the switch is set on the module that
``create_backend_app`` reads it from, before any backend app is created.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import threading
from typing import Any

from modelops_local import guard
from modelops_local.errors import PortInUseError, TwinError

_READY_TIMEOUT_S = 60.0


def _make_server(host: str, port: int, access_key: str) -> Any:
    from moto.moto_server import werkzeug_app
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    if not access_key:
        raise TwinError("moto's server needs the session token (its access key)")
    werkzeug_app.DISABLE_GLOBAL_CORS = True  # what MOTO_DISABLE_GLOBAL_CORS sets, read per backend app
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Bind first ourselves: werkzeug prints and exits the process when a port is taken.
    sock = bind(host, port)
    try:
        bound = int(sock.getsockname()[1])
        app = guard.MotoGuard(DomainDispatcherApplication(create_backend_app), bound, access_key)
        return make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler, fd=sock.fileno()
        )
    finally:
        sock.close()  # werkzeug works on its own duplicate of the descriptor


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (OSError when the port is taken)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _port_error(port: int, exc: OSError) -> TwinError:
    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        return PortInUseError(f"port {port} on 127.0.0.1 is in use (AWS endpoint); pick another with --port")
    return TwinError(f"cannot listen on 127.0.0.1:{port} for the AWS endpoint: {exc.strerror or exc}")


class MotoServer:
    """Start/stop moto's server and know its endpoint."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, access_key: str, in_process: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.access_key = access_key
        self.in_process = in_process
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.in_process:
            try:
                self._server = _make_server(self.host, self.port, self.access_key)
            except OSError as exc:
                raise _port_error(self.port, exc) from None
            self.port = int(self._server.server_address[1])
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="twin-moto",
                daemon=True,
            )
            self._thread.start()
            return
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["MOTO_DISABLE_GLOBAL_CORS"] = "true"
        env[guard.TOKEN_ENV] = self.access_key
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "modelops_local.motoserver", self.host, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self._read_line(self._proc)
        if line.startswith("READY "):
            self.port = int(line.split()[1])
            return
        self._proc.wait(timeout=10)
        if line.startswith("ERROR port-in-use"):
            raise PortInUseError(
                f"port {self.port} on 127.0.0.1 is in use (AWS endpoint); pick another with --port"
            )
        raise TwinError(f"moto server did not start: {line.removeprefix('ERROR ').strip() or 'no output'}")

    @staticmethod
    def _read_line(proc: subprocess.Popen[str]) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""))
        reader.daemon = True
        reader.start()
        reader.join(_READY_TIMEOUT_S)
        if not box:
            proc.kill()
            raise TwinError(f"moto server did not start within {_READY_TIMEOUT_S:.0f} s")
        return box[0].strip()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout:
                proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    import signal

    # Ctrl-C in the terminal reaches the whole process group: the twin stops us by closing stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = list(sys.argv[1:] if argv is None else argv)
    host, port = args[0], int(args[1])
    try:
        server = _make_server(host, port, os.environ.get(guard.TOKEN_ENV, ""))
    except OSError as exc:
        kind = "port-in-use" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "bind"
        print(f"ERROR {kind} {exc.strerror or exc}", flush=True)
        return 3
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # returns when the twin closes our stdin (or dies)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(main())
