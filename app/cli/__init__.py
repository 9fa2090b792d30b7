"""`spendgauge`: run the server, or talk to one (`--url`) or to the database directly (`--db`)."""
from app.cli.main import build_parser, main, run

__all__ = ['build_parser', 'main', 'run']
