"""Serve the deployments of ``deployments/prefect.yaml`` from this process, without a work pool or worker.

``prefect.yaml`` is the one place their names, parameters, schedules, tags and limits are written:
this script reads it, so serving and deploying never drift apart. Run it from anywhere:

    python deployments/serve.py

Flow runs execute in subprocesses of this one, in the repository root (what the yaml's pull step
does on a worker), so the prompts CSV and ``./videos`` resolve the same way. Stop with Ctrl-C
(the served deployments' schedules are paused on the way out).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Schedule

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"


def load_deployment_specs(prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The ``deployments`` entries of a prefect.yaml file."""
    with open(prefect_file, encoding="utf-8") as handle:
        return list(yaml.safe_load(handle)["deployments"])


def _schedules(spec: dict[str, Any]) -> list[Schedule]:
    schedules = []
    for entry in spec.get("schedules") or []:
        if "cron" not in entry:
            raise ValueError(f"deployment {spec['name']!r}: only cron schedules are served, got {entry}")
        schedules.append(Schedule(cron=entry["cron"], timezone=entry.get("timezone"), active=entry.get("active", True)))
    return schedules


def build_deployments(prefect_file: Path = PREFECT_FILE) -> list[RunnerDeployment]:
    """One ``RunnerDeployment`` per deployment in ``prefect_file``; builds, registers nothing.

    Example:
        ```python
        from deployments.serve import build_deployments

        names = [d.name for d in build_deployments()]  # ["daily", "adhoc"]
        ```
    """
    deployments = []
    for spec in load_deployment_specs(prefect_file):
        flow = load_flow_from_entrypoint(spec["entrypoint"])
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                schedules=_schedules(spec),
                parameters=spec.get("parameters") or {},
                tags=spec.get("tags") or [],
                concurrency_limit=spec.get("concurrency_limit"),
                enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
                # The package is installed: runs import it by module, as the yaml's entrypoints do.
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def main() -> None:
    """Serve every deployment until interrupted (at most 4 flow runs at once on this machine)."""
    deployments = build_deployments()
    os.chdir(REPO_ROOT)  # relative parameters (prompts CSV, ./videos) resolve from the checkout
    serve(*deployments, limit=4)


if __name__ == "__main__":
    main()
