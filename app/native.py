"""Desktop-window mode: the dashboard in a pywebview (Qt) window instead of a browser tab."""
from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from nicegui import app, optional_features

from services.core.settings import Settings

log = logging.getLogger(__name__)
active = False  # set when this process serves a native window


class NativeUnavailable(RuntimeError):
    """Native mode cannot start here; the message says why and what to do."""


def prepare_native(settings: Settings) -> None:
    """Check that a window can open, and set up what the window process inherits."""
    global active
    if not optional_features.has('webview'):  # what ui.run checks, with a hint that installs a GUI toolkit too
        raise NativeUnavailable("--native needs the native extra: pip install -e '.[native]'")
    if sys.platform.startswith('linux'):
        if not any(os.environ.get(name) for name in ('DISPLAY', 'WAYLAND_DISPLAY', 'QT_QPA_PLATFORM')):
            raise NativeUnavailable('--native needs a desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set); '
                                    'run without --native and open the printed address in a browser')
        # The extra brings Qt: try it before GTK (pywebview's Linux default, which prints a traceback when PyGObject
        # is missing). The window process inherits the environment.
        os.environ.setdefault('PYWEBVIEW_GUI', 'qt')
    if not settings.on_loopback:  # run_options drops the host: nothing is exposed
        log.warning('native mode listens on 127.0.0.1 only; ignoring host %s', settings.host)
    # NOTE: no app.native.settings['ALLOW_DOWNLOADS']: pywebview 6.2's Qt download handler calls a Qt 5 method and
    # the AttributeError kills the window and the server with it. Pages save files with save_download() instead.
    app.on_connect(_window_connected)
    active = True


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
