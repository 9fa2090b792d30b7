"""`python -m app [serve options]` starts the server; `python -m app [global options] <command>` runs any CLI
command."""
import sys

from app.cli import main
from app.cli.main import command_names

if __name__ == '__main__':
    argv = sys.argv[1:]
    if not argv or (argv[0].startswith('-') and not command_names() & set(argv)):
        argv = ['serve', *argv]
    sys.exit(main(argv))
