"""The Cloud Run deploy (.github/workflows/deploy-gcp.yml): a push reaches dev only, prod only by
hand from main in the gcp-prod environment; the API's new revision is deployed with no traffic
under a tag, smoke-tested through the tag's URL, and only then given the traffic. And the
rendering that makes a revision deploy without traffic (deploy_check --no-traffic-tag)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdarun_cli.deploy_check import GCP_PLACEHOLDERS, hold_traffic, render

ROOT = Path(__file__).resolve().parents[2]
ENVIRON = {name: f"value-of-{name.lower()}" for name in GCP_PLACEHOLDERS}


def workflow() -> dict[str, Any]:
    text = (ROOT / ".github" / "workflows" / "deploy-gcp.yml").read_text()
    document: dict[Any, Any] = yaml.safe_load(text)
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on` as true
    return document


def job() -> dict[str, Any]:
    (only,) = workflow()["jobs"].values()
    found: dict[str, Any] = only
    return found


def position(steps: list[dict[str, Any]], *needles: str) -> int:
    """The index of the one step whose `run` holds every needle."""
    found = [n for n, s in enumerate(steps) if all(x in s.get("run", "") for x in needles)]
    assert len(found) == 1, f"{needles}: {len(found)} steps"
    return found[0]


# ---- stages -----------------------------------------------------------------------------------


def test_a_push_deploys_dev_and_prod_is_only_by_hand_from_main_in_gcp_prod() -> None:
    document, deploy = workflow(), job()
    triggers = document["on"]
    assert set(triggers) == {"workflow_run", "workflow_dispatch"}, "no push trigger of its own"
    assert triggers["workflow_run"]["workflows"] == ["test"]
    assert triggers["workflow_run"]["branches"] == ["main"]
    stage = triggers["workflow_dispatch"]["inputs"]["stage"]
    assert stage["type"] == "choice"
    assert stage["options"] == ["dev", "prod"]
    assert stage["default"] == "dev"
    # The stage is the dispatch input or, for a workflow_run (which has no inputs), dev: so a
    # push can only ever reach gcp-dev, and gcp-prod only a run by hand that chose prod.
    assert deploy["environment"] == "gcp-${{ inputs.stage || 'dev' }}"
    assert deploy["env"]["STAGE"] == "${{ inputs.stage || 'dev' }}"
    assert "'prod'" not in deploy["if"]
    assert "inputs" not in deploy["if"]
    assert "github.event.workflow_run.event == 'push'" in deploy["if"]
    guard = deploy["steps"][0]
    assert guard["if"] == "env.STAGE == 'prod' && github.ref != 'refs/heads/main'"
    assert "exit 1" in guard["run"]
    # One deploy per stage at a time; dev's never waits for prod's.
    assert workflow()["concurrency"]["group"] == "deploy-gcp-${{ inputs.stage || 'dev' }}"
    assert workflow()["concurrency"]["cancel-in-progress"] is False


def test_every_setting_comes_from_the_stages_environment() -> None:
    env = job()["env"]
    for name in GCP_PLACEHOLDERS:
        assert env[name] == f"${{{{ vars.GCP_{name} }}}}", name
    auth = next(s for s in job()["steps"] if "google-github-actions/auth@" in s.get("uses", ""))
    provider = auth["with"]["workload_identity_provider"]
    assert provider == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"


# ---- build, deploy with no traffic, smoke, traffic ----------------------------------------------


def test_build_then_deploy_without_traffic_then_smoke_then_traffic() -> None:
    steps = job()["steps"]
    build = position(steps, "gcloud builds submit")
    # The placeholders are checked before anything is built (the job stops there if one is
    # missing), and rendered again with the traffic held back right before the replace.
    (render_first,) = [n for n, s in enumerate(steps) if s.get("name", "").startswith("Fill in")]
    deploy = position(steps, "--no-traffic-tag", "gcloud run services replace", "service.yaml")
    smoke = position(steps, "python3 -m lambdarun_cli.smoke")
    worker = position(steps, "gcloud run services replace", "worker.yaml")
    traffic = position(steps, "gcloud run services update-traffic lambdarun-api")
    assert render_first < build < deploy < smoke < worker < traffic
    # The replace that makes the API's revision is the rendering with --no-traffic-tag, and
    # nothing else gives traffic to lambdarun-api before the smoke test passed.
    script = "\n".join(s.get("run", "") for s in steps)
    assert script.count("service.yaml") == 1
    assert script.count("update-traffic") == 1
    # The smoke test runs against the tagged revision's own URL, and the traffic goes to that
    # tag: the revision that passed, not whichever is latest.
    assert '"https://$CANDIDATE---${url#https://}"' in steps[smoke]["run"]
    assert '--to-tags "$CANDIDATE=100"' in steps[traffic]["run"]
    assert "--to-latest" not in script
    assert 'echo "CANDIDATE=$candidate" >> "$GITHUB_ENV"' in steps[deploy]["run"]


# ---- deploy_check --no-traffic-tag ---------------------------------------------------------------


@pytest.fixture
def rendered(tmp_path: Path) -> str:
    assert render(ENVIRON, ROOT / "cloudrun", tmp_path, tag="abc123") == []
    return (tmp_path / "service.yaml").read_text()


def serving(*targets: dict[str, Any], name: str = "lambdarun-api") -> list[dict[str, Any]]:
    """`gcloud run services list --format=json` for one service whose status has `targets`."""
    return [{"metadata": {"name": name}, "status": {"traffic": list(targets)}}]


def test_the_new_revision_gets_no_traffic_and_a_tag_while_the_serving_one_keeps_it(
    rendered: str,
) -> None:
    now = serving(
        {"revisionName": "lambdarun-api-00007-abc", "percent": 90, "latestRevision": True},
        {"revisionName": "lambdarun-api-00006-xyz", "percent": 10},
        {"revisionName": "lambdarun-api-c-failed-3-1", "percent": 0, "tag": "c-failed-3-1"},
    )
    document = yaml.safe_load(hold_traffic(rendered, now, "c-1a2b3c4-9-1"))
    assert document["spec"]["template"]["metadata"]["name"] == "lambdarun-api-c-1a2b3c4-9-1"
    assert document["spec"]["traffic"] == [
        {"revisionName": "lambdarun-api-00007-abc", "percent": 90},
        {"revisionName": "lambdarun-api-00006-xyz", "percent": 10},
        {"revisionName": "lambdarun-api-c-1a2b3c4-9-1", "tag": "c-1a2b3c4-9-1", "percent": 0},
    ]
    # Everything else is the file as rendered.
    original = yaml.safe_load(rendered)
    del document["spec"]["template"]["metadata"]["name"]
    del document["spec"]["traffic"], original["spec"]["traffic"]
    assert document == original


def test_the_first_deploy_has_nothing_to_keep_and_takes_the_traffic(rendered: str) -> None:
    for before in ([], serving(name="lambdarun-worker"), serving()):
        document = yaml.safe_load(hold_traffic(rendered, before, "c-1"))
        assert document["spec"]["traffic"] == [
            {"revisionName": "lambdarun-api-c-1", "tag": "c-1", "percent": 100}
        ]


@pytest.mark.parametrize("tag", ["", "C-UPPER", "1-starts-with-digit", "ends-", "a" * 40, "a_b"])
def test_a_tag_cloud_run_would_refuse_is_refused_here(rendered: str, tag: str) -> None:
    with pytest.raises(ValueError, match="not a revision tag"):
        hold_traffic(rendered, [], tag)


def test_the_command_line_renders_the_api_without_traffic_and_leaves_the_worker(
    tmp_path: Path,
) -> None:
    (tmp_path / "serving.json").write_text(
        json.dumps(serving({"revisionName": "lambdarun-api-00002-q", "percent": 100}))
    )
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "lambdarun_cli.deploy_check", "gcp", "--render", str(out),
        "--tag", "abc123", "--no-traffic-tag", "c-abc1234-5-1",
        "--serving", str(tmp_path / "serving.json"),
    ]  # fmt: skip
    environ = {**os.environ, **ENVIRON}
    result = subprocess.run(
        command, cwd=ROOT, env=environ, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    api = yaml.safe_load((out / "service.yaml").read_text())
    assert [t["percent"] for t in api["spec"]["traffic"]] == [100, 0]
    assert ":abc123" in api["spec"]["template"]["spec"]["containers"][0]["image"]
    worker = yaml.safe_load((out / "worker.yaml").read_text())
    assert worker["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    # A bad tag is one line naming the option, and exit 1; without --serving, a usage error.
    bad = subprocess.run(
        [*command[:-4], "--no-traffic-tag", "Bad_Tag", *command[-2:]],
        cwd=ROOT, env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "gcp: --no-traffic-tag: 'Bad_Tag' is not a revision tag" in bad.stderr
    usage = subprocess.run(
        command[:-2], cwd=ROOT, env=environ, capture_output=True, text=True, check=False
    )
    assert usage.returncode == 2
    assert "--no-traffic-tag needs --render and --serving" in usage.stderr
