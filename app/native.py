"""Desktop-window mode: the dashboard in a pywebview (Qt) window instead of a browser tab. When no window can open, the
server keeps serving on 127.0.0.1 and logs one line: why, how to fix it, and the address to open in a browser."""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nicegui import app, core, optional_features

from services.core.settings import Settings

log = logging.getLogger(__name__)
active = False  # set while this process serves a native window

# What Qt's xcb platform plugin loads beyond the X11 client libraries every desktop has, and the Debian/Ubuntu package
# of each. Qt only says "could not load the Qt platform plugin xcb" (and blames libxcb-cursor0, whatever is missing).
XCB_PLUGIN_LIBRARIES = {
    'libxcb-icccm.so.4': 'libxcb-icccm4', 'libxcb-keysyms.so.1': 'libxcb-keysyms1',
    'libxcb-cursor.so.0': 'libxcb-cursor0', 'libxcb-image.so.0': 'libxcb-image0', 'libxcb-util.so.1': 'libxcb-util1',
    'libxcb-render-util.so.0': 'libxcb-render-util0', 'libxcb-randr.so.0': 'libxcb-randr0',
    'libxcb-shape.so.0': 'libxcb-shape0', 'libxcb-sync.so.1': 'libxcb-sync1', 'libxcb-xfixes.so.0': 'libxcb-xfixes0',
    'libxcb-xkb.so.1': 'libxcb-xkb1', 'libxkbcommon-x11.so.0': 'libxkbcommon-x11-0', 'libX11-xcb.so.1': 'libx11-xcb1',
}
README_HINT = 'install what README.md lists under "Desktop window"'
# What the window process does first: load QtWebEngine and start Qt on its platform (xcb, wayland, ...)
QT_PROBE = 'from PyQt6 import QtWebEngineWidgets; from PyQt6.QtWidgets import QApplication; QApplication([])'


@dataclass(frozen=True)
class NoWindow:
    why: str
    fix: str


def prepare_native(settings: Settings) -> bool:
    """Whether a window can open here. Either way the server listens on 127.0.0.1; without a window it says why."""
    global active
    if not settings.on_loopback:  # run_options listens on 127.0.0.1: nothing is exposed
        log.warning('native mode listens on 127.0.0.1 only; ignoring host %s', settings.host)
    if problem := window_problem():
        app.on_startup(lambda: report_no_window(problem))
        return False
    # The extra brings Qt: try it before GTK (pywebview's Linux default, which prints a traceback when PyGObject is
    # missing). The window process inherits the environment.
    os.environ.setdefault('PYWEBVIEW_GUI', 'qt')
    # NOTE: no app.native.settings['ALLOW_DOWNLOADS']: pywebview 6.2's Qt download handler calls a Qt 5 method and
    # the AttributeError kills the window and the server with it. Pages save files with save_download() instead.
    app.on_connect(_window_connected)
    _keep_serving_when_the_window_fails()
    active = True
    return True


def window_problem() -> NoWindow | None:
    """What stops a window from opening, found without starting one (about 15 ms): no pywebview, no desktop
    session, or on Linux's xcb platform a library that Qt's xcb plugin needs."""
    if not optional_features.has('webview'):  # what ui.run checks
        return NoWindow('the native extra (pywebview with Qt) is not installed', "pip install -e '.[native]'")
    if not sys.platform.startswith('linux'):
        return None
    if not any(os.environ.get(name) for name in ('DISPLAY', 'WAYLAND_DISPLAY', 'QT_QPA_PLATFORM')):
        return NoWindow('no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set)',
                        'start it from a desktop session, or under Xvfb with DISPLAY set')
    platform = os.environ.get('QT_QPA_PLATFORM') or ('wayland' if os.environ.get('WAYLAND_DISPLAY') else 'xcb')
    if platform.startswith('xcb') and (missing := missing_libraries()):
        packages = sorted({XCB_PLUGIN_LIBRARIES[name] for name in missing if name in XCB_PLUGIN_LIBRARIES})
        fix = f'on Debian/Ubuntu: sudo apt-get install {" ".join(packages)}' if packages else README_HINT
        return NoWindow(f"Qt's xcb platform plugin cannot load {', '.join(missing)}", fix)
    return None


def missing_libraries(names: list[str] | None = None) -> list[str]:
    """The libraries among `names` (default: what Qt's xcb plugin needs) that do not load; where a library's own
    dependency is missing, the dependency is named."""
    missing = []
    for name in names or XCB_PLUGIN_LIBRARIES:
        try:
            ctypes.CDLL(name)
        except OSError as exc:  # "libxcb-util.so.1: cannot open shared object file: ..."
            culprit = Path(str(exc).split(':', 1)[0]).name
            if culprit not in missing:
                missing.append(culprit)
    return missing


def _keep_serving_when_the_window_fails() -> None:
    """NiceGUI runs the window in a process of its own and stops the app when that process ends: a thread of
    nicegui.native.native_mode.activate() calls core.stop_and_exit(). Right for a window that has shown; a window
    process that ends before its window showed has failed to open one, and the server keeps serving. A closed window
    stops the app at once: its process can hang (pywebview's page-loaded hooks wait forever on a window closed right
    after loading), and the server's exit terminates it."""
    shown = threading.Event()
    app.native.on('shown', shown.set)
    app.native.on('closed', app.shutdown)
    stop_and_exit = core.stop_and_exit

    def window_process_ended() -> None:
        if not shown.is_set():
            _window_failed()
        elif not (app.is_stopping or app.is_stopped):  # else 'closed' stopped it: its shutdown ends the process
            stop_and_exit()  # (a second tear-down of NiceGUI's pools, racing the first, fails an assertion)

    core.stop_and_exit = window_process_ended


def _window_failed() -> None:
    global active
    active = False
    app.native.main_window = None  # nothing reads the window's method queue any more
    report_no_window(diagnose_qt())


def diagnose_qt() -> NoWindow:
    """Why the window process failed, from a short-lived process that starts Qt as it does (about 0.6 s)."""
    try:
        probe = subprocess.run([sys.executable, '-c', QT_PROBE], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return NoWindow('Qt did not start within 30 s', README_HINT)
    lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    if probe.returncode == 0 or not lines:  # Qt starts: something else stopped the window
        return NoWindow('the window process ended before its window showed (its messages are above)', README_HINT)
    why = (lines[-1] if lines[0].startswith('Traceback') else lines[0]).rstrip('.')
    if 'could not connect to display' in why:
        return NoWindow(why, f'set DISPLAY to a running X server (it is {os.environ.get("DISPLAY", "")!r})')
    if 'Could not find the Qt platform plugin' in why:
        return NoWindow(why, f'unset QT_QPA_PLATFORM (it is {os.environ.get("QT_QPA_PLATFORM", "")!r}) '
                             'or set it to xcb or wayland')
    return NoWindow(why, README_HINT)


def report_no_window(problem: NoWindow) -> None:
    url = min(app.urls, default='the address in the "SpendGauge serving on" line')
    log.warning('The desktop window cannot open: %s. To fix: %s; or open %s in a browser: SpendGauge keeps serving '
                'there.', problem.why, problem.fix, url)


def _window_connected(client: Any) -> None:
    log.info('window connected (%s)', client.request.headers.get('user-agent', 'unknown browser'))


def save_download(content: str, filename: str) -> Path:
    """Where a browser would download, a native window saves: into ~/Downloads (or home), never overwriting."""
    folder = Path.home() / 'Downloads'
    folder = folder if folder.is_dir() else Path.home()
    stem, _, suffix = filename.rpartition('.')
    path = folder / f'{stem}-{datetime.now():%Y%m%d-%H%M%S}.{suffix}'
    path.write_text(content)
    return path
