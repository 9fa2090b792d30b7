"""`python -m app [serve options]` starts the server; `python -m app <command>` runs any CLI command."""
import sys

from app.cli import main

if __name__ == '__main__':
    argv = sys.argv[1:]
    if not argv or argv[0].startswith('-'):
        argv = ['serve', *argv]
    sys.exit(main(argv))
