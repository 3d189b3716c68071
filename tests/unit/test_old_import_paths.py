"""Modules that moved keep their old import paths: pickled Prefect results from earlier versions load.

Prefect persists task results with cloudpickle, which names a class by its module path. The fixture below
was pickled by the package before the move (classes under ``prefect_videogen.costs``, ``.ledger``,
``.claims``, ``.manifest``); it must still load, into the classes at their new homes.
"""

from __future__ import annotations

import base64
import importlib
import re
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from prefect_videogen import _moved
from prefect_videogen.batch.expansion import BatchItem, PromptSource
from prefect_videogen.batch.manifest import ManifestItem
from prefect_videogen.errors import ContentRejected
from prefect_videogen.models import JobStatus, Rejection, VideoJob
from prefect_videogen.providers.base import raise_for_job
from prefect_videogen.spend.claims import JobClaim
from prefect_videogen.spend.costs import ChargeStatus, Cost
from prefect_videogen.spend.ledger import LedgerEntry
from prefect_videogen.tasks.slots import ProviderSlot

REPO_ROOT = Path(__file__).resolve().parents[2]

# cloudpickle.dumps({...}) of a Cost, a LedgerEntry, a JobClaim, a ManifestItem and three VideoJobs (one with
# provider_data["rejection"], one with provider_data["charged"]), made on the package before the layout change
# (the classes then lived at prefect_videogen.costs, .ledger, ...).
PICKLED_BEFORE_THE_MOVE = base64.b64decode(
    "gAWVGgcAAAAAAAB9lCiMBGNvc3SUjBZwcmVmZWN0X3ZpZGVvZ2VuLmNvc3RzlIwEQ29zdJSTlCmBlH2UKIwIX19kaWN0X1+UfZQo"
    "jARraW5klIwJZXN0aW1hdGVklIwGYW1vdW50lEc/2ZmZmZmZmowEdW5pdJSMA3VzZJRoDUc/2ZmZmZmZmowGc291cmNllIwHY2F0"
    "YWxvZ5R1jBJfX3B5ZGFudGljX2V4dHJhX1+UTowXX19weWRhbnRpY19maWVsZHNfc2V0X1+Uj5QoaA1oCWgOaAtoDJCMFF9fcHlk"
    "YW50aWNfcHJpdmF0ZV9flE51YowMbGVkZ2VyX2VudHJ5lIwXcHJlZmVjdF92aWRlb2dlbi5sZWRnZXKUjAtMZWRnZXJFbnRyeZST"
    "lCmBlH2UKGgHfZQojAhwcm92aWRlcpSMCGFwaWZyYW1llIwGam9iX2lklIwCajGUjAVtb2RlbJSMAW2UjAphY2NvdW50X2lklIwM"
    "YXBpZnJhbWU6YWJjlIwNY2hhcmdlX3N0YXR1c5RoAowMQ2hhcmdlU3RhdHVzlJOUjAZiaWxsZWSUhZRSlIwOY2hhcmdlZF9hbW91"
    "bnSURz/ZmZmZmZmajAxjaGFyZ2VkX3VuaXSUaA2MC2NoYXJnZWRfdXNklEc/2ZmZmZmZmmgKaAWMBnF1b3RlZJROjAhyZXBvcnRl"
    "ZJROjAdpdGVtX2lklE6MC2Zsb3dfcnVuX2lklE6MCXZpZGVvX3VyaZROjAljbGFpbV9rZXmUTowLcmVjb3JkZWRfYXSUjAhkYXRl"
    "dGltZZSMCGRhdGV0aW1llJOUQwoH6gseAAAAAAAAlGgzjAh0aW1lem9uZZSTlGgzjAl0aW1lZGVsdGGUk5RLAEsASwCHlFKUhZRS"
    "lIaUUpR1aBBOaBGPlChoG2gdaCFoK2gKaDJoH2gpaCpoI5BoE051YowJam9iX2NsYWltlIwXcHJlZmVjdF92aWRlb2dlbi5jbGFp"
    "bXOUjAhKb2JDbGFpbZSTlCmBlH2UKGgHfZQojANrZXmUjAFrlGgbaBxoIWgijAhiYXNlX3VybJSMAJSMC2ZpbmdlcnByaW50lIwB"
    "ZpSMDGNsaWVudF90b2tlbpSMA3Rva5SMCmNyZWF0ZWRfYXSUaECMBGhvc3SUjAFolIwDcGlklEsBaB9oTGguTowHcmVxdWVzdJR9"
    "lGgKTmgdaB6MBmpvYl9hdJROjApnYXZlX3VwX2F0lE6MCmFkb3B0ZWRfYnmUXZR1aBBOaBGPlChoG2hUaCFoHWhSaFFoT2hJaE2Q"
    "aBNOdWKMDW1hbmlmZXN0X2l0ZW2UjBlwcmVmZWN0X3ZpZGVvZ2VuLm1hbmlmZXN0lIwMTWFuaWZlc3RJdGVtlJOUKYGUfZQoaAd9"
    "lChoLowCaTGUjANyb3eUSwGMD29yaWdpbmFsX3Byb21wdJSMBWEgY2F0lIwGcHJvbXB0lGhmjAZzdGF0dXOUjAZzdG9yZWSUaBto"
    "TGgfaExoHU6MCXZpZGVvX2tleZROjAtzaWRlY2FyX2tleZROjAZzaGEyNTaUTowIY29zdF91c2SUTmgjTowFZXJyb3KUTowKdXBk"
    "YXRlZF9hdJRoQHVoEE5oEY+UKGhoaGdoLmhkaG9oZZBoE051YowMcmVqZWN0ZWRfam9ilIwXcHJlZmVjdF92aWRlb2dlbi5tb2Rl"
    "bHOUjAhWaWRlb0pvYpSTlCmBlH2UKGgHfZQoaBuMCHNjZW5hcmlvlGgdjAJqMpRoH2ggaGhocowJSm9iU3RhdHVzlJOUjAZmYWls"
    "ZWSUhZRSlIwKcmF3X3N0YXR1c5RofIwIcHJvZ3Jlc3OUTowKZXJyb3JfY29kZZROjA1lcnJvcl9tZXNzYWdllE6MEnBvbGxfYWZ0"
    "ZXJfc2Vjb25kc5ROjA1yZXBvcnRlZF9jb3N0lE6MEnJlcG9ydGVkX2Nvc3RfdW5pdJROjA1wcm92aWRlcl9kYXRhlH2UKIwJYXNz"
    "ZXRfaWRzlF2UjAlyZWplY3Rpb26UfZQojAVzdGFnZZSMBm91dHB1dJSMB2NoYXJnZWSUiHV1dWgQTmgRj5QoaGhoG2gdaIZof2gf"
    "kGgTTnVijApmYWlsZWRfam9ilGh0KYGUfZQoaAd9lChoG2h4aB2MAmozlGgfaCBoaGh+aH9ofGiATmiBTmiCTmiDTmiETmiFTmiG"
    "fZQoaIhdlGiOiXV1aBBOaBGPlChoaGgbaB1ohmh/aB+QaBNOdWKMCXZpZGVvX2pvYpRodCmBlH2UKGgHfZQoaBtoHGgdaB5oH2gg"
    "aGhoe4wJc3VjY2VlZGVklIWUUpRof4wIZmluaXNoZWSUaIBOaIFOaIJOaINOaIRHP9mZmZmZmZpohWgNaIZ9lIwBeJRLAXN1aBBO"
    "aBGPlChoaGgbaB1ohWiGaH9oH2iEkGgTTnVidS4="
)

MOVED = [
    ("prefect_videogen.costs", "prefect_videogen.spend.costs"),
    ("prefect_videogen.budget", "prefect_videogen.spend.budget"),
    ("prefect_videogen.ledger", "prefect_videogen.spend.ledger"),
    ("prefect_videogen.claims", "prefect_videogen.spend.claims"),
    ("prefect_videogen.expansion", "prefect_videogen.batch.expansion"),
    ("prefect_videogen.manifest", "prefect_videogen.batch.manifest"),
    ("prefect_videogen.generation", "prefect_videogen.pipeline"),
    ("prefect_videogen.artifacts", "prefect_videogen.tasks.artifacts"),
    ("prefect_videogen.slots", "prefect_videogen.tasks.slots"),
]


def test_a_pickle_made_before_the_move_loads_into_the_moved_classes():
    assert b"prefect_videogen.costs" in PICKLED_BEFORE_THE_MOVE  # really the old path
    loaded = cloudpickle.loads(PICKLED_BEFORE_THE_MOVE)
    assert type(loaded["cost"]) is Cost
    assert loaded["cost"] == Cost(kind="estimated", amount=0.4, unit="usd", usd=0.4, source="catalog")
    assert type(loaded["ledger_entry"]) is LedgerEntry
    assert loaded["ledger_entry"].charge_status is ChargeStatus.BILLED
    assert loaded["ledger_entry"].estimated == loaded["cost"]
    assert type(loaded["job_claim"]) is JobClaim and loaded["job_claim"].job_id == "j1"
    assert type(loaded["manifest_item"]) is ManifestItem and loaded["manifest_item"].status == "stored"
    job = loaded["video_job"]
    assert type(job) is VideoJob and job.status is JobStatus.SUCCEEDED and job.reported_cost == 0.4
    assert job.provider_data == {"x": 1}
    # Fields added to VideoJob since take their defaults on an old pickle, and the object round-trips.
    assert job.rejection is None and job.charged is None
    assert VideoJob.model_validate(job.model_dump()) == job
    # What the string keys of provider_data carried then is in the typed fields now, read the same way.
    rejected, failed = loaded["rejected_job"], loaded["failed_job"]
    assert rejected.rejection == Rejection(stage="output", charged=True) and rejected.provider_data == {"asset_ids": []}
    assert failed.rejection is None and failed.charged is False and failed.provider_data == {"asset_ids": []}
    with pytest.raises(ContentRejected) as caught:
        raise_for_job(rejected)
    assert caught.value.stage == "output" and caught.value.charged is True
    # A job pickled now keeps its typed fields as they are.
    fresh = rejected.model_copy(update={"charged": True, "provider_data": {"rejection": "adapter-private"}})
    assert cloudpickle.loads(cloudpickle.dumps(fresh)) == fresh


@pytest.mark.parametrize(("old", "new"), MOVED)
def test_every_old_module_path_is_the_moved_module(old, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    assert old_module is new_module and new_module.__spec__.name == new
    # No file is left at the old path (so version control sees a move), and none may come back.
    assert not (REPO_ROOT / (old.replace(".", "/") + ".py")).exists()
    assert dict(MOVED) == _moved.MOVED


def test_a_fresh_process_loads_the_old_pickle_first_thing():
    """As a Prefect worker reading a stored result: nothing of the package imported beforehand."""
    code = (
        "import base64, sys, cloudpickle; loaded = cloudpickle.loads(base64.b64decode(sys.stdin.read())); "
        "print(type(loaded['cost']).__module__, type(loaded['manifest_item']).__module__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=base64.b64encode(PICKLED_BEFORE_THE_MOVE).decode(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["prefect_videogen.spend.costs", "prefect_videogen.batch.manifest"]


@pytest.mark.parametrize("cls", [Cost, LedgerEntry, JobClaim, ManifestItem, BatchItem, PromptSource, ProviderSlot])
def test_a_class_pickled_under_its_old_module_path_loads(cls, monkeypatch):
    """As a result Prefect stored before the move names the class: by its old module."""
    new = cls.__module__
    old = next(o for o, n in MOVED if n == new)
    monkeypatch.setattr(cls, "__module__", old)
    blob = cloudpickle.dumps(cls)
    monkeypatch.undo()
    assert old.encode() in blob
    assert cloudpickle.loads(blob) is cls


def test_the_readme_import_lines_still_import():
    lines = re.findall(
        r"^from (prefect_videogen[\w.]*) import ([\w, ]+)$", (REPO_ROOT / "README.md").read_text(), re.MULTILINE
    )
    assert lines
    for module, names in lines:
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"from {module} import {name.strip()}"


@pytest.mark.parametrize(("old", "new"), [(o, n) for o, n in MOVED if hasattr(importlib.import_module(n), "logger")])
def test_moved_modules_log_under_their_old_names(old, new):
    """Log filters and handlers set up for the old module paths keep catching the same records."""
    assert importlib.import_module(new).logger.name == old
