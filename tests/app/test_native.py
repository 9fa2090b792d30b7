"""`spendgauge serve --native`: a real pywebview/Qt window on the dashboard, then a clean stop.

Runs `python -m app serve --native` in its own process group on our own Xvfb display (Qt's xcb platform), or on Qt's
`offscreen` platform when there is no usable Xvfb. Checks that the page and the API answer, that the Qt window loaded
the page and its websocket connected ("window connected (... QtWebEngine ...)" in the server log, from app/server.py),
that the window titled SpendGauge exists (Xvfb) or the QtWebEngineProcess children do (offscreen), and that SIGINT
to the process group leaves nothing behind. Under Xvfb a screenshot lands in `screenshots/native-1280x800.png`.

Skipped without the native extra (`pip install -e '.[native]'`) or a Qt platform that starts, except in CI
(CI=true), where that fails: CI installs the extra.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import ROOT, clean_env
from tests.support.unavailable import unavailable

TIMEOUT_S = 25  # start-up to connected window; about 5 s here
STOP_TIMEOUT_S = 10
READY_LINE = re.compile(r'SpendGauge serving on http://127\.0\.0\.1:(\d+)')
CONNECTED_LINE = re.compile(r'window connected \(.*QtWebEngine/')
QT_ENV = {  # no PYWEBVIEW_GUI: app/server.py makes pywebview try Qt first
    'QTWEBENGINE_DISABLE_SANDBOX': '1',  # Chromium's sandbox refuses to run as root and needs user namespaces
    'QTWEBENGINE_CHROMIUM_FLAGS': '--disable-gpu --disable-background-networking --disable-component-update',
}
QT_PROBE = 'import sys; from PyQt6.QtWidgets import QApplication; QApplication(sys.argv)'
SCREENSHOT = ROOT / 'screenshots' / 'native-1280x800.png'
NATIVE_IN_CI = ' (CI installs the native extra, so this is a failure)'
OUR_FRAME = re.compile(rf'File "{re.escape(str(ROOT))}/(app|components|services)/')


def require_native_extra() -> None:
    if not sys.platform.startswith('linux'):
        pytest.skip('the native smoke test runs on Linux (Xvfb or Qt offscreen)')
    try:
        pytest.importorskip('webview', reason="pywebview is missing: pip install -e '.[native]'")
        pytest.importorskip('PyQt6.QtWebEngineWidgets',
                            reason="PyQt6 QtWebEngine is missing or cannot load: pip install -e '.[native]'")
    except pytest.skip.Exception as exc:
        unavailable(str(exc), NATIVE_IN_CI)


def qt_starts(env: dict[str, str]) -> str | None:
    """None when a QApplication starts with this environment, else why not."""
    try:
        probe = subprocess.run([sys.executable, '-c', QT_PROBE], env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return 'timed out'
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or [f'exit {probe.returncode}'])[-1]


def start_xvfb(log_path: Path) -> tuple[subprocess.Popen, str] | None:
    """Xvfb on a display number it picks itself (-displayfd), or None."""
    if not shutil.which('Xvfb'):
        return None
    read_fd, write_fd = os.pipe()
    with open(log_path, 'w') as log:
        command = ['Xvfb', '-displayfd', str(write_fd), '-screen', '0', '1280x800x24', '-nolisten', 'tcp']
        xvfb = subprocess.Popen(command, pass_fds=(write_fd,), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    os.close(write_fd)
    number = b''
    deadline = time.monotonic() + 10
    with os.fdopen(read_fd, 'rb', buffering=0) as pipe:
        while not number.endswith(b'\n') and time.monotonic() < deadline:
            if select.select([pipe], [], [], 0.1)[0]:
                chunk = pipe.read(16)
                if not chunk:
                    break
                number += chunk
    if not number.strip().isdigit():
        xvfb.kill()
        xvfb.wait()
        return None
    return xvfb, f':{number.strip().decode()}'


@pytest.fixture
def qt_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a Qt window: our own Xvfb display with xcb (when xwininfo can find the window there), else
    the offscreen platform."""
    require_native_extra()
    env = clean_env(**QT_ENV)
    for name in ('WAYLAND_DISPLAY', 'PYWEBVIEW_GUI'):
        env.pop(name, None)
    problems = []
    xvfb = start_xvfb(tmp_path / 'xvfb.log') if shutil.which('xwininfo') else None
    try:
        if xvfb:
            xcb = {**env, 'DISPLAY': xvfb[1], 'QT_QPA_PLATFORM': 'xcb'}
            if (problem := qt_starts(xcb)) is None:
                yield xcb
                return
            problems.append(f'xcb on Xvfb {xvfb[1]}: {problem}')
        else:
            problems.append('no Xvfb or xwininfo (apt-get install xvfb x11-utils)')
        env.pop('DISPLAY', None)
        offscreen = {**env, 'QT_QPA_PLATFORM': 'offscreen'}
        if (problem := qt_starts(offscreen)) is None:
            yield offscreen
            return
        problems.append(f'offscreen: {problem}')
        unavailable('no Qt platform starts: ' + '; '.join(problems), NATIVE_IN_CI)
    finally:
        if xvfb:
            xvfb[0].terminate()
            xvfb[0].wait(10)


def group_members(pgid: int) -> dict[int, str]:
    """The live processes of a process group, pid -> command line (from /proc)."""
    members = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            state, _ppid, group = stat.rsplit(')', 1)[1].split()[:3]
            if int(group) == pgid and state != 'Z':
                members[int(entry.name)] = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode().strip()
        except (OSError, ValueError):
            continue  # gone meanwhile
    return members


def spendgauge_windows(display: str) -> list[tuple[str, str]]:
    """(title, WIDTHxHEIGHT) of the X windows whose title names SpendGauge."""
    tree = subprocess.run(['xwininfo', '-root', '-tree'], env={**os.environ, 'DISPLAY': display},
                          capture_output=True, text=True, timeout=10).stdout
    return re.findall(r'"([^"]*SpendGauge[^"]*)": \(.*?\)\s+(\d+x\d+)\+', tree)


def test_native_window_shows_the_dashboard_and_stops_cleanly(tmp_path: Path, qt_env: dict[str, str]) -> None:
    display = qt_env.get('DISPLAY')
    env = {**qt_env, 'SPENDGAUGE_ENV_FILE': '', 'SPENDGAUGE_PORT': '0'}  # port 0: NiceGUI picks a free one
    log_path = tmp_path / 'native.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            [sys.executable, '-m', 'app', 'serve', '--native', '--db', f'sqlite:///{tmp_path / "native.db"}'],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pgid = process.pid

    def server_log() -> str:
        return log_path.read_text(errors='replace')

    def wait_for(what: str, check: Callable[[], Any], deadline: float) -> Any:
        while time.monotonic() < deadline:
            if result := check():
                return result
            assert process.poll() is None, f'server exited with {process.returncode} before {what}:\n{server_log()}'
            time.sleep(0.1)
        pytest.fail(f'no {what} within {TIMEOUT_S} s:\n{server_log()}')

    def ready_port() -> int | None:
        match = READY_LINE.search(server_log())
        return int(match[1]) if match else None

    def answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        deadline = time.monotonic() + TIMEOUT_S
        base = f'http://127.0.0.1:{wait_for("NiceGUI ready line", ready_port, deadline)}'
        wait_for('answer from /api/v1/health', lambda: answers(base + '/api/v1/health'), deadline)
        assert httpx.get(base + '/api/v1/health', timeout=10).json()['status'] == 'ok'
        page = httpx.get(base + '/', timeout=10)
        assert page.status_code == 200
        assert re.search(r'<title>[^<]*SpendGauge[^<]*</title>', page.text), page.text[:500]

        wait_for('connected Qt window', lambda: CONNECTED_LINE.search(server_log()), deadline)
        members = group_members(pgid)
        assert any('QtWebEngineProcess' in cmd for cmd in members.values()), members
        if display:
            windows = wait_for('window titled SpendGauge', lambda: spendgauge_windows(display), deadline)
            assert '1280x800' in [size for _title, size in windows], windows
        time.sleep(1)  # let the window settle (and the charts animate in) as a user would
        if display and shutil.which('import'):  # best effort, for people: what the window showed
            SCREENSHOT.parent.mkdir(exist_ok=True)
            subprocess.run(['import', '-display', display, '-window', 'root', str(SCREENSHOT)],
                           capture_output=True, timeout=20, check=False)
        running_log = server_log()
        assert 'Traceback' not in running_log, running_log

        os.killpg(pgid, signal.SIGINT)  # what Ctrl-C in a terminal does; SIGTERM would orphan the window
        process.wait(STOP_TIMEOUT_S)
        stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        while group_members(pgid) and time.monotonic() < stop_deadline:
            time.sleep(0.1)
        assert group_members(pgid) == {}, 'left behind after SIGINT'
        assert process.returncode in (0, 130), server_log()
        if display:
            assert spendgauge_windows(display) == []
        # A stop soon after the page loaded can make pywebview log a traceback from NiceGUI's page-loaded hooks
        # (evaluate_js on a closing page); none may come from our code.
        assert not OUR_FRAME.search(server_log()[len(running_log):]), server_log()
    finally:
        if group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(5)
