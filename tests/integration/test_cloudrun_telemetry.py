"""TELEMETRY=otel on Cloud Run: `deploy_check gcp --render DIR --telemetry otel` turns the setting
on in both services and puts Google's OpenTelemetry collector beside each app; the app's OTLP
endpoint, the collector's receiver, its health check and Cloud Run's probe of it, and the
config file's mount all name the same ports and paths. Off (the default) ships neither."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lambdarun_cli.deploy_check import (
    COLLECTOR_CONFIG_SECRET,
    GCP_FILES,
    GCP_PLACEHOLDERS,
    hold_traffic,
    render,
    with_collector,
)

ROOT = Path(__file__).resolve().parents[2]
CLOUDRUN = ROOT / "cloudrun"
ENVIRON = {name: f"value-of-{name.lower()}" for name in GCP_PLACEHOLDERS}
COLLECTOR = yaml.safe_load((CLOUDRUN / "otel-collector.yaml").read_text())


def rendered(tmp_path: Path, *, telemetry: bool) -> dict[str, dict[str, Any]]:
    assert render(ENVIRON, CLOUDRUN, tmp_path, tag="abc123", telemetry=telemetry) == []
    return {name: yaml.safe_load((tmp_path / name).read_text()) for name in GCP_FILES}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("name", GCP_FILES)
def test_otel_runs_the_app_beside_a_collector_it_exports_to(tmp_path: Path, name: str) -> None:
    service = rendered(tmp_path, telemetry=True)[name]
    template = service["spec"]["template"]
    app, collector = template["spec"]["containers"]
    assert collector["name"] == "collector"
    assert collector["image"].startswith("us-docker.pkg.dev/cloud-ops-agents-artifacts/")
    assert not collector["image"].endswith(":latest")
    # The app starts once the collector's probe answers: no span is sent into nothing.
    dependencies = template["metadata"]["annotations"]["run.googleapis.com/container-dependencies"]
    assert yaml.safe_load(dependencies) == {app["name"]: ["collector"]}
    settings = env_of(app)
    assert settings["TELEMETRY"] == "otel"
    assert settings["OTEL_SERVICE_NAME"] == service["metadata"]["name"]
    # The app sends where the collector listens, and Cloud Run probes what its health check serves.
    endpoint = urlsplit(settings["OTEL_EXPORTER_OTLP_ENDPOINT"])
    receiver = COLLECTOR["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert (endpoint.scheme, endpoint.hostname) == ("http", "localhost")
    assert endpoint.port == port_of(receiver)
    health = COLLECTOR["extensions"]["health_check"]["endpoint"]
    assert collector["startupProbe"]["httpGet"]["port"] == port_of(health)
    assert "health_check" in COLLECTOR["service"]["extensions"]
    # Its config is cloudrun/otel-collector.yaml, mounted from the secret at the path it reads.
    [config_flag] = collector["args"]
    config_path = Path(config_flag.removeprefix("--config="))
    [mount] = collector["volumeMounts"]
    [volume] = template["spec"]["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["secret"]["secretName"] == COLLECTOR_CONFIG_SECRET
    [item] = volume["secret"]["items"]
    assert Path(mount["mountPath"]) / item["path"] == config_path
    # The rest of the service is as off renders it.
    off = rendered(tmp_path / "off", telemetry=False)[name]
    added = {"TELEMETRY", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"}
    kept = {k: v for k, v in settings.items() if k not in added}
    assert kept == env_of(off["spec"]["template"]["spec"]["containers"][0])
    assert service["spec"]["traffic"] == off["spec"]["traffic"]


def test_off_ships_no_collector_and_no_telemetry(tmp_path: Path) -> None:
    for service in rendered(tmp_path, telemetry=False).values():
        template = service["spec"]["template"]
        [app] = template["spec"]["containers"]
        assert "TELEMETRY" not in env_of(app)
        assert "volumes" not in template["spec"]
        assert (
            "run.googleapis.com/container-dependencies" not in template["metadata"]["annotations"]
        )


def test_the_collector_sends_traces_and_metrics_to_google_cloud() -> None:
    pipelines = COLLECTOR["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["exporters"] == ["googlecloud"]
        # Each component a pipeline names is configured, and memory is checked first.
        assert set(pipeline["processors"]) <= set(COLLECTOR["processors"])
        assert pipeline["processors"][0] == "memory_limiter"
    # The dashboard reads the metrics under the prefix the googlecloud exporter writes.
    dashboard = (CLOUDRUN / "monitoring" / "dashboard.json").read_text()
    assert "workload_googleapis_com:http_server_request_duration" in dashboard


def test_a_tagged_revision_with_no_traffic_keeps_the_sidecar(tmp_path: Path) -> None:
    rendered(tmp_path, telemetry=True)
    text = hold_traffic((tmp_path / "service.yaml").read_text(), [], "c-1")
    template = yaml.safe_load(text)["spec"]["template"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["api", "collector"]
    assert template["metadata"]["name"] == "lambdarun-api-c-1"


def test_a_service_file_it_cannot_read_is_refused_not_half_rendered() -> None:
    text = (CLOUDRUN / "service.yaml").read_text()
    twice = with_collector(text)
    with pytest.raises(ValueError, match="TELEMETRY"):
        with_collector(twice)
    with pytest.raises(ValueError, match="containers"):
        with_collector(text.replace("\n  traffic:\n", "\n  traffic_moved:\n"))


def test_the_command_line_and_the_deploy_workflow(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lambdarun_cli.deploy_check", "gcp", "--render", str(tmp_path),
         "--telemetry", "otel"],
        cwd=ROOT, env={**ENVIRON, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "name: collector" in (tmp_path / "worker.yaml").read_text()
    workflow = (ROOT / ".github" / "workflows" / "deploy-gcp.yml").read_text()
    renders = re.findall(r"deploy_check gcp --render[^\n]*(?:\\?\n[^\n]*){0,2}", workflow)
    assert len(renders) == 2
    assert all('--telemetry "$TELEMETRY"' in r for r in renders), renders
    assert "TELEMETRY: ${{ vars.GCP_TELEMETRY || 'off' }}" in workflow
    assert f"gcloud secrets versions add {COLLECTOR_CONFIG_SECRET}" in workflow
    assert "--data-file=src/cloudrun/otel-collector.yaml" in workflow
    docs = (ROOT / "docs" / "observability.md").read_text()
    assert f"gcloud secrets create {COLLECTOR_CONFIG_SECRET}" in docs
    assert "--telemetry otel" in docs
