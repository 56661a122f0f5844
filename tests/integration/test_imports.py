"""Cold start: with the embedded defaults the app imports no cloud SDK or driver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "boto3",
    "botocore",
    "aioboto3",
    "aiobotocore",
    "asyncpg",
    "psycopg",
    "redis",
    "google",
    "mangum",
    "functions_framework",
    "aws_lambda_powertools",
)

PROBE = """
import sys
# Namespace packages (google.*) can be imported at start-up by .pth files of the
# environment; only what the app itself imports counts.
at_startup = set(sys.modules)
import asyncio, json
import httpx
from api.app import create_app

app = create_app()

async def main():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            created = await client.post("/v1/users", json={"email": "a@b.co", "name": "A"})
            assert created.status_code == 201, created.text
            assert (await client.get("/readyz")).status_code == 200

asyncio.run(main())
print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - at_startup})))
"""


def test_the_default_app_serves_without_importing_any_sdk(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/probe.db"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "fastapi" in loaded  # the probe really ran the app
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_api_has_no_sdk_import_statement() -> None:
    offenders = []
    for path in (ROOT / "api").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            is_import = len(words) >= 2 and words[0] in {"import", "from"}
            if is_import and words[1].split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
