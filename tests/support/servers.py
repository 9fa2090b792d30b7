"""A real SpendGauge server process on 127.0.0.1, for end-to-end tests of the API and the CLI."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: no pytest markers (NiceGUI would think it runs a screen test)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTEST_CURRENT_TEST' and not k.startswith('SPENDGAUGE_')}
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
