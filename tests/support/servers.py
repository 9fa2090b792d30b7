"""A real SpendGauge server process on 127.0.0.1, for end-to-end tests of the API and the CLI."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _port_slice() -> range:
    """The ports this test process hands out: below the kernel's ephemeral range (where the system picks ports for
    outgoing connections and for bind(0), e.g. closed_port_url), one slice of it per pytest-xdist worker, so that a
    server's port can be taken neither by another worker's server nor by a connection while the server starts."""
    try:
        ephemeral_low = int(Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = 10_000, min(ephemeral_low, 32768)
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 1)
    index = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0').removeprefix('gw') or 0)
    size = (high - low) // max(workers, 1)
    return range(low + index * size, low + (index + 1) * size)


_ports = _port_slice()
_next_port = _ports.start + random.randrange(len(_ports)) if len(_ports) >= 100 else None


def free_port() -> int:
    """A port on 127.0.0.1 that nothing is bound to: the next one of this process's slice (_port_slice), each used
    once per round of the slice; a port bound by anything else is passed over."""
    global _next_port
    if _next_port is None:  # no room below the ephemeral range: any free port
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            return s.getsockname()[1]
    for _ in range(len(_ports)):
        port, _next_port = _next_port, _ports.start + (_next_port + 1 - _ports.start) % len(_ports)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise RuntimeError(f'no free port in {_ports}')


NO_PRICE_DATA_URL = 'http://127.0.0.1:9/no-price-data-in-tests'  # a price update without a URL fetches nothing real


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: no pytest markers (NiceGUI would think it runs a screen test), and no
    price update that reaches the Internet."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTEST_CURRENT_TEST' and not k.startswith('SPENDGAUGE_')}
    env['SPENDGAUGE_PRICE_DATA_URL'] = NO_PRICE_DATA_URL
    env.update(extra)
    return env


@dataclass
class Server:
    url: str
    database_url: str
    process: subprocess.Popen
    log_path: Path
    token: str | None = None

    @property
    def api(self) -> str:
        return self.url + '/api/v1'

    def client(self, token: str | None = None) -> httpx.Client:
        token = token or self.token
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(workdir: Path, database_url: str | None = None, token: str | None = None, timeout: float = 30,
                 port: int | None = None, dotenv: bool = False, **env: str) -> Server:
    """A server on `port` (default: a free one), e.g. the port of one that was stopped, with its database. With
    `dotenv`, as a user starts it: settings from `workdir/.env` (naming `port`), `env` and the defaults (the
    database under `workdir/data`)."""
    port = port or free_port()
    database_url = database_url or f'sqlite:///{workdir / ("data/spendgauge.db" if dotenv else "spendgauge.db")}'
    extra = env if dotenv else {'SPENDGAUGE_DATABASE_URL': database_url, 'SPENDGAUGE_PORT': str(port),
                                'SPENDGAUGE_ENV_FILE': '', **env}
    if token:
        extra['SPENDGAUGE_API_TOKENS'] = token
    log_path = workdir / f'server-{port}.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen([sys.executable, '-m', 'app', 'serve'], cwd=workdir, env=clean_env(**extra),
                                   stdout=log, stderr=subprocess.STDOUT)
    server = Server(f'http://127.0.0.1:{port}', database_url, process, log_path, token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f'server exited with {process.returncode}:\n{server.log()}')
        try:
            if httpx.get(server.api + '/health', timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f'server did not answer within {timeout} s:\n{server.log()}')
