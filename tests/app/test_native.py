"""`spendgauge serve --native` in real processes: `python -m app serve --native` in a process group of its own.

- A real pywebview/Qt window, on our own Xvfb display with Qt's xcb platform (Qt's `offscreen` platform stands in
  where there is no usable Xvfb, except in CI): the page and the API answer, the window loads the page and its
  websocket connects ("window connected (... QtWebEngine ...)" in the server log, from app/native.py), the window
  titled SpendGauge exists, and a screenshot of it (`screenshots/native-1280x800.png`) shows the dashboard. SIGINT to
  the process group leaves nothing behind; closing the window, as a window manager does, stops the server.
- A window that cannot open (a display nobody serves; Qt's xcb libraries hidden in a mount namespace of its own): the
  server keeps serving and logs one line with why, the fix and its address, and SIGINT stops it cleanly.

Skipped without the native extra (`pip install -e '.[native]'`), except in CI (CI=true), where that fails: CI installs
the extra, Xvfb and the libraries.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.native import XCB_PLUGIN_LIBRARIES, missing_libraries
from components.theme import GOLD
from tests.support.servers import ROOT, clean_env
from tests.support.unavailable import running_in_ci, unavailable

TIMEOUT_S = 60  # start-up to connected window: about 5 s here, 30 s and more on a busy machine
STOP_TIMEOUT_S = 20
READY_LINE = re.compile(r'SpendGauge serving on http://127\.0\.0\.1:(\d+)')
CONNECTED_LINE = re.compile(r'window connected \(.*QtWebEngine/')
NO_WINDOW_LINE = re.compile(r'WARNING app\.native: The desktop window cannot open: (.*)')
QT_ENV = {  # no PYWEBVIEW_GUI: app/native.py makes pywebview try Qt first
    'QTWEBENGINE_DISABLE_SANDBOX': '1',  # Chromium's sandbox refuses to run as root and needs user namespaces
    'QTWEBENGINE_CHROMIUM_FLAGS': '--disable-gpu --disable-background-networking --disable-component-update',
}
QT_PROBE = 'import sys; from PyQt6.QtWidgets import QApplication; QApplication(sys.argv)'
SCREENSHOT = ROOT / 'screenshots' / 'native-1280x800.png'
# Saves the window (argv 3, its X id) and counts its colours and the pixels near the theme's gold (argv 2)
SCREENSHOT_SCRIPT = """
import json, sys
from collections import Counter
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QApplication
app = QApplication(sys.argv)
image = app.primaryScreen().grabWindow(int(sys.argv[3], 16)).toImage().convertToFormat(QImage.Format.Format_RGB888)
image.save(sys.argv[1])
gold = bytes.fromhex(sys.argv[2].lstrip('#'))
data, width, line = image.constBits().asstring(image.sizeInBytes()), image.width(), image.bytesPerLine()
colours = Counter()
for y in range(image.height()):
    row = data[y * line:y * line + width * 3]
    colours.update(zip(row[0::3], row[1::3], row[2::3]))
near_gold = sum(n for rgb, n in colours.items() if all(abs(a - b) <= 24 for a, b in zip(rgb, gold)))
print(json.dumps({'size': [width, image.height()], 'colours': len(colours), 'gold_pixels': near_gold}))
"""
MIN_COLOURS, MIN_GOLD_PIXELS = 100, 200  # a blank window has a few colours; the dashboard about 1,150 and 900 gold
NATIVE_IN_CI = ' (CI installs the native extra, so this is a failure)'
OUR_FRAME = re.compile(rf'File "{re.escape(str(ROOT))}/(app|components|services)/')


def require_native_extra() -> None:
    if not sys.platform.startswith('linux'):
        pytest.skip('the native tests run on Linux (Xvfb or Qt offscreen)')
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
        # 32 px taller than the window: pywebview centres a Qt 6 window 16 px above the middle
        command = ['Xvfb', '-displayfd', str(write_fd), '-screen', '0', '1280x832x24', '-nolisten', 'tcp']
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


def window_env(**extra: str) -> dict[str, str]:
    env = clean_env(**QT_ENV, **extra)
    for name in ('WAYLAND_DISPLAY', 'PYWEBVIEW_GUI'):
        env.pop(name, None)
    return env


@pytest.fixture
def qt_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a Qt window: our own Xvfb display with xcb (when xwininfo can find the window there), else,
    except in CI, the offscreen platform."""
    require_native_extra()
    env = window_env()
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
        if running_in_ci():
            pytest.fail('CI shows the window on Xvfb with Qt xcb (.ci/run installs them): ' + '; '.join(problems))
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


def spendgauge_windows(display: str) -> list[tuple[str, str, str]]:
    """(window id, title, WIDTHxHEIGHT) of the X windows whose title names SpendGauge."""
    tree = subprocess.run(['xwininfo', '-root', '-tree'], env={**os.environ, 'DISPLAY': display},
                          capture_output=True, text=True, timeout=10).stdout
    return re.findall(r'(0x[0-9a-f]+) "([^"]*SpendGauge[^"]*)": \(.*?\)\s+(\d+x\d+)\+', tree)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class NativeServer:
    process: subprocess.Popen
    log_path: Path
    deadline: float

    @property
    def pgid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def wait_for(self, what: str, check: Callable[[], Any]) -> Any:
        while time.monotonic() < self.deadline:
            if result := check():
                return result
            assert self.process.poll() is None, f'server exited with {self.process.returncode} before {what}:\n' \
                                                f'{self.log()}'
            time.sleep(0.1)
        pytest.fail(f'no {what} within {TIMEOUT_S} s:\n{self.log()}')

    def url(self) -> str:
        """The address in the "SpendGauge serving on" line, once it answers."""
        port = self.wait_for('serving line', lambda: (match := READY_LINE.search(self.log())) and match[1])
        base = f'http://127.0.0.1:{port}'
        self.wait_for('answer from /api/v1/health', lambda: answers(base + '/api/v1/health'))
        return base

    def wait_until_gone(self) -> None:
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f'server still running after {STOP_TIMEOUT_S} s:\n{self.log()}')
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(self.pgid) == {}, 'left behind'

    def interrupt(self) -> None:
        """What Ctrl-C in a terminal does (SIGTERM would orphan the window): nothing may stay."""
        os.killpg(self.pgid, signal.SIGINT)
        self.wait_until_gone()
        assert self.process.returncode in (0, 130), self.log()


@pytest.fixture
def start_native(tmp_path: Path) -> Iterator[Callable[..., NativeServer]]:
    """Starts `serve --native` (after `prefix`, a command that runs the rest) on a SQLite file and a port in
    8000-8999; kills what is left at the end."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str], prefix: tuple[str, ...] = ()) -> NativeServer:
        log_path = tmp_path / 'native.log'
        command = [*prefix, sys.executable, '-m', 'app', 'serve', '--native', '--db', f'sqlite:///{tmp_path / "n.db"}']
        with open(log_path, 'w') as log:
            process = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                       env={**env, 'SPENDGAUGE_ENV_FILE': '', 'SPENDGAUGE_PORT': '0'},
                                       start_new_session=True)
        started.append(process)
        return NativeServer(process, log_path, time.monotonic() + TIMEOUT_S)

    yield start
    for process in started:
        if group_members(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(5)


def screenshot(env: dict[str, str], window_id: str) -> dict[str, Any]:
    """Saves the window to SCREENSHOT; its size, colours and gold pixels."""
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shot = subprocess.run([sys.executable, '-c', SCREENSHOT_SCRIPT, str(SCREENSHOT), GOLD, window_id], env=env,
                          capture_output=True, text=True, timeout=30)
    assert shot.returncode == 0, shot.stderr
    return json.loads(shot.stdout)


def shows_dashboard(shot: dict[str, Any]) -> bool:
    return shot['colours'] >= MIN_COLOURS and shot['gold_pixels'] >= MIN_GOLD_PIXELS


def test_native_window_shows_the_dashboard_and_stops_cleanly(qt_env: dict[str, str],
                                                             start_native: Callable[..., NativeServer]) -> None:
    display = qt_env.get('DISPLAY')
    server = start_native(qt_env)
    base = server.url()
    assert httpx.get(base + '/api/v1/health', timeout=10).json()['status'] == 'ok'
    page = httpx.get(base + '/', timeout=10)
    assert page.status_code == 200
    assert re.search(r'<title>[^<]*SpendGauge[^<]*</title>', page.text), page.text[:500]

    server.wait_for('connected Qt window', lambda: CONNECTED_LINE.search(server.log()))
    members = group_members(server.pgid)
    assert any('QtWebEngineProcess' in cmd for cmd in members.values()), members
    if display:
        [(window_id, _title, size)] = server.wait_for('window titled SpendGauge', lambda: spendgauge_windows(display))
        assert size == '1280x800'
        for _ in range(10):  # the page renders, the charts animate in
            shot = screenshot(qt_env, window_id)
            if shows_dashboard(shot):
                break
            time.sleep(0.5)
        assert shows_dashboard(shot) and shot['size'] == [1280, 800], f'{SCREENSHOT} shows no dashboard: {shot}'
    else:
        time.sleep(1)  # let the window settle as a user would
    running_log = server.log()
    assert 'Traceback' not in running_log, running_log
    assert not NO_WINDOW_LINE.search(running_log), running_log

    server.interrupt()
    if display:
        assert spendgauge_windows(display) == []
    # A stop soon after the page loaded can make pywebview log a traceback from NiceGUI's page-loaded hooks
    # (evaluate_js on a closing page); none may come from our code.
    assert not OUR_FRAME.search(server.log()[len(running_log):]), server.log()


class XClientMessageEvent(ctypes.Structure):
    _fields_ = [('type', ctypes.c_int), ('serial', ctypes.c_ulong), ('send_event', ctypes.c_int),
                ('display', ctypes.c_void_p), ('window', ctypes.c_ulong), ('message_type', ctypes.c_ulong),
                ('format', ctypes.c_int), ('data', ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [('xclient', XClientMessageEvent), ('pad', ctypes.c_long * 24)]


def close_window(display: str, window_id: str) -> None:
    """What a window manager does when the user clicks a window's close button: send it WM_DELETE_WINDOW."""
    x11 = ctypes.CDLL('libX11.so.6')
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(display.encode())
    assert connection, f'cannot open X display {display}'
    event = XEvent()
    event.xclient.type = 33  # ClientMessage
    event.xclient.window = int(window_id, 16)
    event.xclient.message_type = x11.XInternAtom(connection, b'WM_PROTOCOLS', False)
    event.xclient.format = 32
    event.xclient.data[0] = x11.XInternAtom(connection, b'WM_DELETE_WINDOW', False)
    assert x11.XSendEvent(connection, event.xclient.window, False, 0, ctypes.byref(event))
    x11.XCloseDisplay(connection)  # flushes the event


def test_closing_the_window_stops_the_server(qt_env: dict[str, str],
                                              start_native: Callable[..., NativeServer]) -> None:
    display = qt_env.get('DISPLAY')
    if not display:
        pytest.skip('closing a window needs an X display (Xvfb)')
    server = start_native(qt_env)
    server.url()
    server.wait_for('connected Qt window', lambda: CONNECTED_LINE.search(server.log()))
    [(window_id, _title, _size)] = server.wait_for('window titled SpendGauge', lambda: spendgauge_windows(display))

    close_window(display, window_id)
    server.wait_until_gone()
    assert server.process.returncode == 0, server.log()
    assert spendgauge_windows(display) == []
    assert not NO_WINDOW_LINE.search(server.log()), server.log()
    assert not OUR_FRAME.search(server.log()), server.log()


def unserved_display() -> str:
    """An X display number that no X server serves here."""
    number = next(n for n in range(150, 400)
                  if not Path(f'/tmp/.X11-unix/X{n}').exists() and not Path(f'/tmp/.X{n}-lock').exists())
    return f':{number}'


def hiding(sonames: list[str]) -> tuple[str, ...]:
    """A command prefix that runs the rest in a mount namespace of its own where these libraries are empty files, as
    on a machine without their packages. Needs root and `unshare -m` (a container may refuse it: skipped then)."""
    if os.geteuid() != 0 or not shutil.which('unshare') or \
            subprocess.run(['unshare', '-m', 'true'], capture_output=True).returncode != 0:
        pytest.skip('hiding libraries needs root and unshare -m')
    listing = subprocess.run(['ldconfig', '-p'], capture_output=True, text=True,
                             env={'PATH': '/usr/sbin:/sbin:/usr/bin:/bin'}).stdout
    mounts = []
    for soname in sonames:
        if not (found := re.search(rf'^\s*{re.escape(soname)} \(.*\) => (\S+)$', listing, re.MULTILINE)):
            unavailable(f'{soname} is not installed (README.md, "Desktop window")', ' (.ci/run installs it)')
        mounts.append(f'mount --bind /dev/null {shlex.quote(found[1])}')
    return 'unshare', '-m', 'sh', '-c', ' && '.join([*mounts, 'exec "$@"']), 'sh'


@pytest.mark.parametrize('cause', ['no X server on the display', 'xcb libraries missing'])
def test_a_window_that_cannot_open_leaves_the_server_serving(cause: str,
                                                             start_native: Callable[..., NativeServer]) -> None:
    require_native_extra()
    display = unserved_display()
    if cause == 'no X server on the display':  # the window process starts and fails
        prefix: tuple[str, ...] = ()
        why = f'qt.qpa.xcb: could not connect to display {display}'
        fix = f"set DISPLAY to a running X server (it is '{display}')"
    else:  # the machine: the check before the start finds them missing, no window process starts
        prefix = hiding(['libxcb-icccm.so.4', 'libxcb-keysyms.so.1'])
        why = "Qt's xcb platform plugin cannot load libxcb-icccm.so.4, libxcb-keysyms.so.1"
        fix = 'on Debian/Ubuntu: sudo apt-get install libxcb-icccm4 libxcb-keysyms1'
    server = start_native(window_env(DISPLAY=display, QT_QPA_PLATFORM='xcb'), prefix)
    base = server.url()

    line = server.wait_for('the line saying the window cannot open', lambda: NO_WINDOW_LINE.search(server.log()))
    assert line[1] == f'{why}. To fix: {fix}; or open {base} in a browser: SpendGauge keeps serving there.'
    assert server.process.poll() is None
    assert httpx.get(base + '/api/v1/health', timeout=10).json()['status'] == 'ok'
    assert re.search(r'<title>[^<]*SpendGauge[^<]*</title>', httpx.get(base + '/', timeout=10).text)
    assert not [cmd for cmd in group_members(server.pgid).values() if 'spawn_main' in cmd or 'QtWebEngine' in cmd]
    log = server.log()
    assert len(NO_WINDOW_LINE.findall(log)) == 1 and 'Traceback' not in log, log

    server.interrupt()


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='loads libc.so.6')
def test_missing_libraries_names_what_does_not_load() -> None:
    assert missing_libraries(['libc.so.6', 'libspendgauge-absent.so.1']) == ['libspendgauge-absent.so.1']


def apt_packages(text: str) -> set[str]:
    """The packages of the first `apt-get install` command in text (continued lines included)."""
    command = re.search(r'apt-get install (.*?)(?<!\\)\n', text, re.DOTALL)
    assert command, text
    return {word for word in command[1].split() if not word.startswith('-') and word not in ('\\', '>/dev/null')}


def test_readme_and_ci_install_what_the_window_needs() -> None:
    section = (ROOT / 'README.md').read_text().split('### Desktop window', 1)[1].split('\n## ', 1)[0]
    readme = apt_packages(section)
    assert set(XCB_PLUGIN_LIBRARIES.values()) <= readme, set(XCB_PLUGIN_LIBRARIES.values()) - readme
    ci = apt_packages((ROOT / '.ci' / 'run').read_text())
    assert readme <= ci, readme - ci
