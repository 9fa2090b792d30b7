"""Entry point for NiceGUI's test fixtures and `python main.py`; the CLI (`spendgauge serve`) does the same."""
import sys

from app.security.exposure import UnsafeExposure
from app.server import CannotListen, build, run
from services.core.settings import get_settings

try:
    build()
except UnsafeExposure as exc:
    sys.exit(f'spendgauge: {exc}')

if __name__ in {'__main__', '__mp_main__'}:
    try:
        run(get_settings())
    except CannotListen as exc:
        sys.exit(f'spendgauge: {exc}')
