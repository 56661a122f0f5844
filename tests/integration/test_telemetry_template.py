"""template.yaml wires OpenTelemetry when OtelLayerArn is set, and nothing of it otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lambdarun_cli.local_template import NO_VALUE, Template

ROOT = Path(__file__).resolve().parents[2]
LAYER = "arn:aws:lambda:eu-west-1:901920570463:layer:aws-otel-python-arm64-ver-1-32-0:1"


def template(**overrides: str) -> Template:
    return Template(
        ROOT / "template.yaml", stack_name="lambdarun-dev", overrides={"Stage": "dev", **overrides}
    )


@pytest.mark.parametrize("function", ["ApiFunction", "WorkerFunction"])
def test_a_layer_turns_telemetry_on_for_both_functions(function: str) -> None:
    on = template(OtelLayerArn=LAYER)
    environment = on.function(function).environment
    assert environment["TELEMETRY"] == "otel"
    assert environment["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/otel-instrument"
    assert environment["OTEL_METRICS_EXPORTER"] == "none"  # metrics stay EMF
    assert environment["OTEL_SERVICE_NAME"] == "lambdarun-dev"
    properties = on.function_properties(function)
    assert on.resolve(properties["Layers"]) == [LAYER]
    assert xray_policy(on, properties) == "AWSXrayWriteOnlyAccess"  # the layer's exporter


@pytest.mark.parametrize("function", ["ApiFunction", "WorkerFunction"])
def test_without_a_layer_telemetry_is_off_and_nothing_is_loaded(function: str) -> None:
    off = template()
    environment = off.function(function).environment
    assert environment["TELEMETRY"] == "off"
    assert not {"AWS_LAMBDA_EXEC_WRAPPER", "OTEL_METRICS_EXPORTER"} & set(environment)
    properties = off.function_properties(function)
    assert xray_policy(off, properties) is NO_VALUE
    assert off.resolve(properties["Layers"]) is NO_VALUE


def test_a_layer_arn_of_another_kind_is_refused() -> None:
    with pytest.raises(Exception, match="OtelLayerArn"):
        template(OtelLayerArn="arn:aws:s3:::bucket/layer.zip")


def xray_policy(template: Template, properties: dict[str, Any]) -> object:
    """The function's conditional X-Ray policy entry, resolved (the others need a stack)."""
    [entry] = [p for p in properties["Policies"] if isinstance(p, dict) and "Fn::If" in p]
    return template.resolve(entry)
