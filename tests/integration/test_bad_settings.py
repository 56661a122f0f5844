"""A setting the app cannot serve with stops both servers at start-up with ONE line that names
the variable and exit status 2: no traceback to dig through, in a terminal or a platform log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAMBDARUN = str(Path(sys.executable).parent / "lambdarun")
DEPLOYED = {  # a deployed stage, authenticated as it must be
    "STAGE": "prod",
    "AUTH": "jwt",
    "JWT_JWKS_URL": "https://issuer.example.com/.well-known/jwks.json",
    "JWT_ISSUER": "https://issuer.example.com/",
    "JWT_AUDIENCE": "https://api.example.com",
}
FILE = ROOT / "README.md"  # a file, where a SQLite path would need a folder

CASES = {
    "rate-limit-zero": ({"RATE_LIMIT": "0/minute"}, "RATE_LIMIT"),
    "log-level": ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    "sqlite-under-a-file": ({"DATABASE_URL": f"sqlite:///{FILE}/data/dev.db"}, "DATABASE_URL"),
    "short-cursor-secret": ({**DEPLOYED, "CURSOR_SECRET": "x"}, "CURSOR_SECRET"),
    "empty-cursor-secret": ({**DEPLOYED, "CURSOR_SECRET": ""}, "CURSOR_SECRET"),
    "auth-off-deployed": ({"STAGE": "prod", "CURSOR_SECRET": "k" * 32}, "AUTH"),
    "port": ({"PORT": "eighty"}, "PORT"),
}
COMMANDS = {
    "cloud-run": [sys.executable, "-m", "handlers.cloudrun"],
    "lambdarun-dev": [LAMBDARUN, "dev", "--no-reload"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_setting_is_one_line_and_status_2(command: str, case: str) -> None:
    settings, variable = CASES[case]
    env = {**os.environ, "PORT": "0", **settings}
    result = subprocess.run(
        COMMANDS[command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_a_good_long_cursor_secret_passes_the_check() -> None:
    from api.settings import check_cursor_secret, load_settings

    check_cursor_secret(
        load_settings(**{k.lower(): v for k, v in DEPLOYED.items()}, cursor_secret="k" * 32)
    )
