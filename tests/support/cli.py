"""Running the `spendgauge` command line as a real subprocess, and the shapes its output must have."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import clean_env

SPENDGAUGE = str(Path(sys.executable).with_name('spendgauge'))
TIMEOUT = 60

@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f'$ {" ".join(self.args)}\nexit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}'

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def run(args: list[str], cwd: Path, timeout: float = TIMEOUT, stdin: str | None = None, **env: str) -> Result:
    """Run a command in a clean environment (no SPENDGAUGE_* variables from outside, no .env file unless
    SPENDGAUGE_ENV_FILE names one)."""
    proc = subprocess.run(args, cwd=cwd, env=clean_env(**{'SPENDGAUGE_ENV_FILE': '', **env}), capture_output=True,
                          text=True, timeout=timeout, input=stdin)
    return Result([str(a) for a in args], proc.returncode, proc.stdout, proc.stderr)


def cli(*args: str, cwd: Path, **env: str) -> Result:
    return run([sys.executable, '-m', 'app', *args], cwd, TIMEOUT, **env)


def ok(result: Result) -> Result:
    assert result.returncode == 0, str(result)
    assert 'Traceback' not in result.stderr, str(result)
    return result


def assert_one_line_error(result: Result, code: int) -> str:
    """The CLI's own failures: exactly one `spendgauge: ...` line on stderr, nothing on stdout."""
    assert result.returncode == code, str(result)
    assert 'Traceback' not in result.stderr, str(result)
    assert len(result.error_lines) == 1, str(result)
    assert result.error_lines[0].startswith('spendgauge: '), str(result)
    assert result.stdout == '', str(result)
    return result.error_lines[0]


def assert_usage_error(result: Result, *fragments: str) -> str:
    """argparse's failures: a usage block, then one `error:` line; exit 2, no traceback."""
    assert result.returncode == 2, str(result)
    assert 'Traceback' not in result.stderr, str(result)
    assert result.stderr.startswith('usage: spendgauge'), str(result)
    last = result.error_lines[-1]
    assert ': error: ' in last, str(result)
    for fragment in fragments:
        assert fragment in last, str(result)
    assert result.stdout == '', str(result)
    return last
