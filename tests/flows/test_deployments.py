"""deployments/prefect.yaml and deployments/serve.py: entrypoints load, parameters validate, both agree."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import jsonschema
import pytest
import yaml
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron
from prefect.utilities.callables import parameter_schema

from prefect_videogen.batch.expansion import PromptSource, expand
from prefect_videogen.flows import generate_video, generate_videos

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"


def load_specs() -> dict[str, dict]:
    with open(PREFECT_FILE, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    return {spec["name"]: spec for spec in config["deployments"]}


def load_serve_module():
    spec = importlib.util.spec_from_file_location("videogen_serve", REPO_ROOT / "deployments" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing must only define things: serve() would block here
    return module


SPECS = load_specs()


def validator_for(flow: Flow) -> jsonschema.Validator:
    schema = parameter_schema(flow.fn).model_dump(exclude_none=True)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_file_has_a_scheduled_batch_and_an_adhoc_deployment():
    with open(PREFECT_FILE, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    assert set(SPECS) == {"daily", "adhoc"}
    daily, adhoc = SPECS["daily"], SPECS["adhoc"]
    assert daily["entrypoint"] == "prefect_videogen.flows.batch:generate_videos"
    assert adhoc["entrypoint"] == "prefect_videogen.flows.generate:generate_video"
    [schedule] = daily["schedules"]
    Cron(schedule["cron"], timezone=schedule["timezone"])  # a valid cron and IANA timezone
    assert schedule["timezone"] == "Europe/Berlin" and adhoc["schedules"] == []
    for spec in SPECS.values():
        assert spec["work_pool"]["name"] == "videogen-local"
        assert isinstance(spec["concurrency_limit"], int) and spec["concurrency_limit"] >= 1
        assert "videogen" in spec["tags"] and spec["enforce_parameter_schema"] is True
    [pull] = config["pull"]
    assert pull == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $PREFECT_VIDEOGEN_CHECKOUT }}"}
    }


@pytest.mark.parametrize("name", sorted(SPECS))
def test_entrypoint_resolves_to_the_package_flow(name):
    flow = load_flow_from_entrypoint(SPECS[name]["entrypoint"], use_placeholder_flow=False)
    assert isinstance(flow, Flow)
    assert flow is {"daily": generate_videos, "adhoc": generate_video}[name]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_parameters_validate_against_the_flow_schema(name):
    flow = load_flow_from_entrypoint(SPECS[name]["entrypoint"], use_placeholder_flow=False)
    params = SPECS[name]["parameters"]
    validator_for(flow).validate(params)
    validated = flow.validate_parameters(params)
    assert set(params) <= set(validated)  # defaults are filled in for the rest
    model = validated["prompts" if name == "daily" else "request"]
    assert model.model_dump(exclude_unset=True) == params["prompts" if name == "daily" else "request"]


@pytest.mark.parametrize(
    ("name", "path", "bad"),
    [
        # Which aspect ratios and tiers a model takes is catalog data, checked by the run; the schema
        # refuses what has no aspect ratio's or tier's shape.
        ("daily", ("prompts", "defaults", "aspect_ratio"), "4x3"),
        ("adhoc", ("request", "resolution"), "Ultra HD"),
        ("adhoc", ("request", "colour"), "red"),
    ],
)
def test_a_bad_parameter_fails_both_validations(name, path, bad):
    flow = load_flow_from_entrypoint(SPECS[name]["entrypoint"], use_placeholder_flow=False)
    params = yaml.safe_load(yaml.safe_dump(SPECS[name]["parameters"]))  # a deep copy
    target = params
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    assert list(validator_for(flow).iter_errors(params))
    with pytest.raises(Exception, match=path[-1]):
        flow.validate_parameters(params)


def test_daily_prompts_file_expands_and_fits_the_catalog(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # what the pull step does on a worker
    source = PromptSource(**SPECS["daily"]["parameters"]["prompts"])
    assert source.rows_file == "deployments/prompts/daily.csv"
    for provider in ("local", "apiframe", "scenario"):
        items = expand(source, provider)
        assert [i.item_id for i in items] == ["fox-snow", "harbour-fog", "city-rain", "bees-lavender"]
    assert items[0].request.prompt.startswith("a red fox trotting through fresh snow at dawn")
    assert (items[0].request.aspect_ratio, items[2].request.duration) == ("9:16", 8)


def test_serve_builds_the_same_deployments_without_running():
    module = load_serve_module()
    built = {d.name: d for d in module.build_deployments()}
    assert set(built) == set(SPECS)
    for name, deployment in built.items():
        spec = SPECS[name]
        assert deployment.entrypoint == spec["entrypoint"].replace(":", ".")
        assert deployment.parameters == spec["parameters"]
        assert deployment.tags == spec["tags"]
        assert deployment.concurrency_limit == spec["concurrency_limit"]
        assert deployment.enforce_parameter_schema is True
        schedules = [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]
        assert schedules == [(s["cron"], s["timezone"], s["active"]) for s in spec["schedules"]]


async def test_the_server_accepts_the_deployments_and_enforces_their_schema(prefect_server):
    module = load_serve_module()
    # build_deployments is sync code (to_deployment dispatches to a coroutine inside an event loop).
    deployments = await asyncio.to_thread(module.build_deployments)
    async with get_client() as client:
        for deployment in deployments:
            deployment_id = await deployment.apply()
            stored = await client.read_deployment(deployment_id)
            assert stored.parameters == SPECS[deployment.name]["parameters"]
            assert stored.enforce_parameter_schema
            assert stored.parameter_openapi_schema["properties"].keys() >= stored.parameters.keys()
        adhoc = await client.read_deployment_by_name("generate-video/adhoc")
        run = await client.create_flow_run_from_deployment(adhoc.id, parameters={"request": {"prompt": "an owl"}})
        assert run.parameters["request"] == {"prompt": "an owl"}
        with pytest.raises(Exception, match="aspect_ratio|4x3"):
            await client.create_flow_run_from_deployment(
                adhoc.id, parameters={"request": {"prompt": "an owl", "aspect_ratio": "4x3"}}
            )
        await client.delete_flow_run(run.id)  # no worker here: keep the harness free of stray runs
