"""Reproducible builds: what ships is installed from hashed locks (requirements/*.txt, written by
`make lock` from pyproject.toml) that are current, complete and hold only what their target
needs; the Lambda build and both Cloud Run images install from them with hash checking; the
base image is pinned by digest; the tools that build are pinned."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_cloudrun_server import build_context
from tests.support.gcp_events import dockerfile_stages
from tests.support.services import missing

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
# Each lock: who installs it, the extras `make lock` locks for it, what it must and must never
# hold. The Lambda zip never carries a server (cold start is the product); the images never
# carry the AWS SDK; the API image no functions-framework stack.
TARGETS = {
    "lambda.txt": {
        "installed_by": "sam.mk",
        "extras": {"aws"},
        "holds": {"fastapi", "mangum", "boto3", "aws-lambda-powertools", "joserfc"},
        "never": {"uvicorn", "uvloop", "croniter", "functions-framework", "httpx", "asyncpg"}
        | {"opentelemetry-sdk"},  # with telemetry on, the layer brings it
    },
    "cloudrun-api.txt": {
        "installed_by": "deps-api",
        "extras": {"server", "postgres", "redis", "pubsub", "pubsub-push", "otel"},
        "holds": {"fastapi", "uvicorn", "uvloop", "asyncpg", "redis", "httpx", "google-auth"}
        | {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"},
        "never": {"boto3", "botocore", "mangum", "functions-framework", "flask", "gunicorn"},
    },
    "cloudrun-worker.txt": {
        "installed_by": "deps-worker",
        "extras": {"gcp", "postgres", "redis", "pubsub", "otel"},
        "holds": {"fastapi", "functions-framework", "asyncpg", "redis", "httpx"}
        | {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"},
        "never": {"boto3", "botocore", "mangum", "uvloop", "httptools", "croniter"},
    },
}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")
DIGEST = re.compile(r"^python:3\.12-slim-bookworm@sha256:[0-9a-f]{64}$")


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """A requirements file's entries: name -> (version, its hashes); continuation lines joined,
    comments dropped. Anything that is not `name==version` with hashes fails here."""
    found: dict[str, tuple[str, list[str]]] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = REQUIREMENT.match(line)
        assert match, f"{path.name}: not an exact pin: {line[:80]}"
        found[match[1].lower()] = (match[2], HASH.findall(line))
    return found


def pins(path: Path) -> dict[str, str]:
    return {name: version for name, (version, _) in entries(path).items()}


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        missing("uv is not installed (the dev extra has it; `make lock` needs it)")
    assert found is not None
    return found


def lock_commands() -> dict[str, str]:
    """What `make lock` runs, by the lock file each command writes."""
    result = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "lock", "UV=uv"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    commands = result.stdout.replace("\\\n", " ").splitlines()
    written = {}
    for command in commands:
        if " pip compile " in command:
            output = re.search(r"--output-file (\S+)", command)
            assert output, command
            written[Path(output[1]).name] = command
    return written


# ---- the locks themselves ---------------------------------------------------------------------


def test_there_is_a_lock_for_each_target_and_make_lock_writes_them_all() -> None:
    assert {p.name for p in LOCKS.glob("*.txt")} == set(TARGETS)
    assert set(lock_commands()) == set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_pin_of_a_lock_is_exact_and_carries_its_hashes(name: str) -> None:
    locked = entries(LOCKS / name)
    assert len(locked) >= 10, "too few entries: the parser would prove nothing"
    for package, (version, hashes) in locked.items():
        assert hashes, f"{name}: {package}=={version} has no --hash"
    text = (LOCKS / name).read_text()
    assert not re.search(r"^\s*(-e|--editable|\S+ @ |git\+|https?://)", text, re.MULTILINE)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_lock_holds_what_its_target_needs_and_nothing_it_must_not(name: str) -> None:
    target = TARGETS[name]
    locked = set(pins(LOCKS / name))
    assert target["holds"] <= locked, f"{name} misses {target['holds'] - locked}"
    assert not target["never"] & locked, f"{name} holds {target['never'] & locked}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_make_lock_locks_each_target_for_its_extras_platform_and_python(name: str) -> None:
    command = lock_commands()[name]
    assert set(re.findall(r"--extra (\S+)", command)) == TARGETS[name]["extras"]
    for flag in ("--generate-hashes", "--only-binary :all:", "--python-version 3.12"):
        assert flag in command, f"{name}: {flag} missing from: {command}"
    platform = "aarch64-manylinux2014" if name == "lambda.txt" else "x86_64-manylinux_2_36"
    assert f"--python-platform {platform}" in command


def test_no_lock_is_stale_against_pyproject(tmp_path: Path) -> None:
    """`make lock` run again against the package registry, starting from the locks as they are
    (uv keeps a pinned version while pyproject.toml allows it): any pin that moves, appears or
    goes means pyproject.toml changed without `make lock`. A newer release alone moves nothing."""
    tool = uv()
    for name in TARGETS:
        shutil.copy(LOCKS / name, tmp_path / name)
    result = subprocess.run(
        ["make", "--no-print-directory", "lock", f"UV={tool}", f"LOCK_DIR={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in TARGETS:
        committed, fresh = pins(LOCKS / name), pins(tmp_path / name)
        changed = {
            package: (committed.get(package), fresh.get(package))
            for package in committed.keys() | fresh.keys()
            if committed.get(package) != fresh.get(package)
        }
        assert not changed, f"requirements/{name} is stale, run `make lock`: {changed}"


def test_the_staleness_check_does_see_a_stale_lock(tmp_path: Path) -> None:
    """The control: a pin outside pyproject.toml's range (fastapi>=0.162) is moved by
    `make lock`, so the test above would fail on it."""
    tool = uv()
    for name in TARGETS:
        shutil.copy(LOCKS / name, tmp_path / name)
    stale = tmp_path / "lambda.txt"
    stale.write_text(re.sub(r"^fastapi==\S+", "fastapi==0.110.0", stale.read_text(), flags=re.M))
    subprocess.run(
        ["make", "--no-print-directory", "lock", f"UV={tool}", f"LOCK_DIR={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert pins(stale)["fastapi"] != "0.110.0"


# ---- who installs them, and how ---------------------------------------------------------------


def make_variable(text: str, name: str) -> str:
    match = re.search(rf"^{name}\s*:?=\s*(.*)$", text, re.MULTILINE)
    assert match, f"{name} is not set"
    return match[1].strip()


def test_the_lambda_build_installs_the_lock_with_hash_checking() -> None:
    sam = (ROOT / "sam.mk").read_text()
    assert make_variable(sam, "SAM_LOCK") == "requirements/lambda.txt"
    assert make_variable(sam, "SAM_EXTRAS") == "aws"
    recipe = sam.split("define SAM_BUILD_PYTHON", 1)[1].split("endef", 1)[0].replace("\\\n", " ")
    (install,) = [line for line in recipe.splitlines() if " -m pip install " in line]
    for flag in (
        "--require-hashes",
        "--only-binary=:all:",
        "--requirement $(SAM_LOCK)",
        "--no-compile",
        "--platform $(SAM_PLATFORM)",
    ):
        assert flag in install, f"sam.mk's pip install lacks {flag}"
    assert "--constraint" not in install
    assert "compileall -f " in recipe
    assert "--invalidation-mode unchecked-hash" in recipe


@pytest.mark.parametrize("name", ["cloudrun-api.txt", "cloudrun-worker.txt"])
def test_each_image_installs_its_lock_with_hash_checking(name: str) -> None:
    stages = dockerfile_stages()
    stage = TARGETS[name]["installed_by"]
    run = " ".join(a for i, a in stages[stage] if i == "RUN")
    assert f"source=requirements/{name}," in run, f"{stage} does not install requirements/{name}"
    for flag in ("--require-hashes", "--only-binary=:all:", "--no-compile"):
        assert flag in run, f"{stage}: pip install lacks {flag}"
    # pip's own .pyc files are timestamp-checked, and compileall skips a .pyc it finds current:
    # only with -f (or none written) does the unchecked-hash mode reach the dependencies.
    assert "compileall -f " in run


def test_the_locks_the_dockerfile_mounts_are_in_the_build_context() -> None:
    context = build_context()
    for name in ("cloudrun-api.txt", "cloudrun-worker.txt"):
        assert f"requirements/{name}" in context, f".dockerignore leaves out requirements/{name}"
    assert "requirements/lambda.txt" not in context


def test_the_base_image_is_pinned_by_a_digest_dependabot_can_move() -> None:
    stages = dockerfile_stages()
    args = dict(a.split("=", 1) for i, a in stages[""] if i == "ARG")
    assert DIGEST.match(args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]
    for stage in ("build", "runtime"):
        assert stages[stage][0][1].split()[0] == "${PYTHON_IMAGE}"
    # Dependabot updates FROM lines only; the ARG must name what it updated.
    (pinned,) = [a.split()[0] for i, a in stages["base-image-for-dependabot"] if i == "FROM"]
    assert pinned == args["PYTHON_IMAGE"], (
        "cloudrun/Dockerfile: the base-image-for-dependabot stage names another digest than "
        "ARG PYTHON_IMAGE: copy it into the ARG"
    )


def test_dependabot_watches_the_digest_the_locks_and_the_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    watched = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert {("docker", "/cloudrun"), ("pip", "/requirements"), ("github-actions", "/")} <= watched


def test_the_tools_that_build_are_pinned() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (install,) = [line for line in makefile.splitlines() if "'aws-sam-cli" in line]
    assert re.search(r"'aws-sam-cli==\d+\.\d+\.\d+'", install), install
    assert re.search(r"'cfn-lint==\d+\.\d+\.\d+'", install), install
