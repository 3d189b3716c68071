"""generate_videos: expansion, up-front validation, manifest, reruns, isolation, bounds, preview."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from prefect_videogen.batch.expansion import PromptSource, expand
from prefect_videogen.batch.manifest import load_manifest
from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.errors import InvalidBatch
from prefect_videogen.flows import generate_videos
from prefect_videogen.media import probe_video

from prefect_helpers import task_states

GRID = {"subject": ["a fox", "an owl", "a cat"], "time_of_day": ["dawn", "dusk"]}


def renderer(tmp_path, delay=0.0):
    return LocalRenderer(queue_delay_seconds=delay, jobs_dir=str(tmp_path / "jobs"))


def storage(tmp_path):
    return LocalVideoStorage(base_path=str(tmp_path / "videos"))


def jobs(tmp_path):
    return sorted((tmp_path / "jobs").glob("*.json")) if (tmp_path / "jobs").exists() else []


def test_expansion_over_grid_rows_and_files(tmp_path):
    items = expand(PromptSource(template="{subject} at {time_of_day}", grid=GRID))
    assert [i.request.prompt for i in items][:2] == ["a fox at dawn", "a fox at dusk"]
    assert len({i.item_id for i in items}) == 6
    assert [i.item_id for i in expand(PromptSource(template="{subject} at {time_of_day}", grid=GRID))] == [
        i.item_id for i in items
    ]  # stable ids
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("id,subject,duration,aspect_ratio\nfox-1,a fox,8,9:16\nowl-1,an owl,4,16:9\n")
    rows = expand(PromptSource(template="{subject}, {style}", rows_file=str(csv_file), grid={"style": ["noir"]}))
    assert [(r.item_id, r.request.prompt, r.request.duration, r.request.aspect_ratio) for r in rows] == [
        ("fox-1", "a fox, noir", 8, "9:16"),
        ("owl-1", "an owl, noir", 4, "16:9"),
    ]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"prompt": "a heron"}\n\n{"prompt": "a crane", "resolution": "high"}\n')
    # No resolution: the model's default tier, filled in by the catalog's plan.
    planned = expand(PromptSource(rows_file=str(jsonl)), "local")
    assert [r.plan.request.resolution for r in planned if r.plan] == ["standard", "high"]


async def test_one_bad_row_fails_the_batch_up_front(prefect_server, tmp_path):
    source = PromptSource(
        rows=[{"prompt": "fine"}, {"prompt": "too long", "duration": 61}, {"prompt": "x", "aspect_ratio": "4:3"}]
    )
    with pytest.raises(InvalidBatch) as caught:
        await generate_videos(source, provider=renderer(tmp_path), storage=storage(tmp_path))
    message = str(caught.value)
    assert "row 2" in message and "duration=61" in message
    assert "row 3" in message and "aspect_ratio='4:3'" in message
    assert jobs(tmp_path) == []


async def test_batch_stores_every_item_and_a_rerun_pays_nothing(prefect_server, tmp_path):
    source = PromptSource(
        template="{subject} at {time_of_day} ({tag})",
        grid={**GRID, "tag": [tmp_path.name]},
        defaults={"duration": 1, "aspect_ratio": "9:16"},
    )
    made = await generate_videos(
        source, provider=renderer(tmp_path), storage=storage(tmp_path), max_concurrency=3, return_state=True
    )
    first = await made.aresult()
    assert first.counts == {"stored": 6}
    # The plan reaches the tasks untraversed (quoted); the submit's name still reads from it.
    names = await task_states(made.state_details.flow_run_id, expected=1 + 3 * 6)
    assert {name for name in names if name.startswith("submit ")} == {
        f"submit local/title-card {item.item_id}" for item in first.items
    }
    for item in first.items:
        probe = probe_video(item.video_uri)
        assert (probe.width, probe.height, probe.duration_seconds) == (720, 1280, 1.0)
        sidecar = json.loads(open(item.sidecar_uri).read())
        assert sidecar["metadata"]["original_prompt"] == item.original_prompt
        assert sidecar["metadata"]["item_id"] == item.item_id
    manifest = load_manifest(first.manifest_uri).model_dump(mode="json")  # per-item records, assembled
    assert {i["status"] for i in manifest["items"].values()} == {"stored"}
    assert all(i["job_id"] and i["video_key"] and "://" not in i["video_key"] for i in manifest["items"].values())
    assert len(jobs(tmp_path)) == 6

    state = await generate_videos(source, provider=renderer(tmp_path), storage=storage(tmp_path), return_state=True)
    again = await state.aresult()
    assert again.counts == {"stored": 6}
    assert len(jobs(tmp_path)) == 6  # zero new provider jobs
    states = await task_states(state.state_details.flow_run_id, expected=7)
    # A stored item is recorded by the batch itself, not by a task run per item (issue 20); a rerun
    # answers each one from the manifest with a "stored" step, shown as Cached, every time.
    assert sorted(s for name, s in states.items() if name.startswith("stored ")) == ["Cached"] * 6
    third = await generate_videos(source, provider=renderer(tmp_path), storage=storage(tmp_path), return_state=True)
    assert (await third.aresult()).counts == {"stored": 6}
    states = await task_states(third.state_details.flow_run_id, expected=7)
    assert [s for name, s in states.items() if name.startswith("stored ")] == ["Cached"] * 6
    assert not [name for name in states if name.startswith(("submit ", "wait ", "download "))]  # no provider step


async def test_failures_are_isolated_and_reported_by_item(prefect_server, tmp_path, monkeypatch):
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "providers": {
                    "local": {
                        "models": {
                            "title-card": {
                                "provider_model_id": "title-card",
                                "durations": {"min": 1, "max": 60},
                                "aspect_ratios": ["16:9", "9:16"],
                                "sizes": {"standard": {"16:9": "1280x720", "9:16": "720x1280"}},
                                "price": {"unit": "usd", "per_second": {"standard": 1.0}},
                            }
                        }
                    }
                }
            }
        )
    )
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(override))
    source = PromptSource(
        template="{subject} {n}", grid={"subject": ["fox"], "n": [str(i) for i in range(5)]}, defaults={"duration": 1}
    )
    result = await generate_videos(
        source, provider=renderer(tmp_path), storage=storage(tmp_path), max_cost_usd=3.0, max_concurrency=5
    )
    assert result.counts == {"stored": 3, "refused": 2}
    refused = [i for i in result.items if i.status == "refused"]
    assert all("max_cost_usd" in i.error for i in refused)
    assert len(jobs(tmp_path)) == 3
    assert result.total_cost_usd == pytest.approx(3.0)


async def test_preview_submits_nothing(prefect_server, tmp_path):
    result = await generate_videos(
        PromptSource(template="{subject} at {time_of_day}", grid=GRID),
        provider=renderer(tmp_path),
        storage=storage(tmp_path),
        preview=True,
    )
    assert result.preview and result.counts == {"preview": 6}
    assert jobs(tmp_path) == []
    assert [p for p in (tmp_path / "videos").rglob("*") if p.is_file()] == []  # storage checked, nothing written


@pytest.mark.parametrize("use_global_limit", [False, True])
async def test_provider_concurrency_is_bounded(prefect_server, tmp_path, use_global_limit):
    limit_name = None
    if use_global_limit:
        limit_name = f"videogen-test-{tmp_path.name[-20:]}".lower().replace("_", "-")
        async with get_client() as client:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name, limit=1))
    source = PromptSource(
        template="bounded {n}", grid={"n": [f"{tmp_path.name}-{i}" for i in range(3)]}, defaults={"duration": 1}
    )
    await generate_videos(
        source,
        provider=renderer(tmp_path, delay=0.3),
        storage=storage(tmp_path),
        max_concurrency=1,
        concurrency_limit=limit_name,
    )
    created = sorted(json.loads(p.read_text())["created_at"] for p in jobs(tmp_path))
    # One job in flight at a time: each is created only after the previous one's 0.3 s queue delay.
    assert len(created) == 3
    assert all(later - earlier >= 0.3 for earlier, later in zip(created, created[1:], strict=False))


async def test_rewrite_keeps_both_prompts_and_is_paid_once(prefect_server, tmp_path):
    from prefect_videogen.blocks import ChatCompletionsCredentials
    from prefect_videogen.testing import ChatEmulator, EmulatorServer

    source = PromptSource(
        template="{subject} {tag}",
        grid={"subject": ["a fox", "an owl"], "tag": [tmp_path.name]},
        defaults={"duration": 1},
    )
    with EmulatorServer(ChatEmulator()) as chat:
        creds = ChatCompletionsCredentials(api_key="sk-emulator-key", base_url=chat.base_url + "/v1")
        first = await generate_videos(source, provider=renderer(tmp_path), storage=storage(tmp_path), rewrite=creds)
        again = await generate_videos(source, provider=renderer(tmp_path), storage=storage(tmp_path), rewrite=creds)
        assert chat.emulator.counters["completions"] == 2  # two distinct prompts, two runs: paid once each
    assert first.counts == again.counts == {"stored": 2}
    for item in first.items:
        assert item.prompt != item.original_prompt and item.original_prompt in item.prompt
        sidecar = json.loads(open(item.sidecar_uri).read())
        assert sidecar["metadata"]["original_prompt"] == item.original_prompt
        assert sidecar["request"]["prompt"] == item.prompt


@pytest.mark.parametrize("item_artifacts", [None, False])
async def test_item_artifacts_by_default_in_a_small_batch_and_off_on_request(prefect_server, tmp_path, item_artifacts):
    source = PromptSource(template="{subject} {tag}", grid={"subject": ["a fox", "an owl"], "tag": [tmp_path.name]})
    state = await generate_videos(
        source,
        provider=renderer(tmp_path),
        storage=storage(tmp_path),
        item_artifacts=item_artifacts,
        return_state=True,
    )
    assert (await state.aresult()).counts == {"stored": 2}
    async with get_client() as client:
        found = await client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [str(state.state_details.flow_run_id)]}}},
        )
    keys = {a["key"] for a in found.json()}
    per_item = {k for k in keys if k.startswith(("video-", "progress-"))}
    # Each video's link and thumbnail and each job's bar: 3 per item in a batch of up to 100 items.
    assert len(per_item) == (6 if item_artifacts is None else 0), keys
    assert {"videogen-batch", "videogen-batch-progress", "videogen-costs"} <= keys


async def test_items_run_with_the_collector_set_for_a_batch_and_it_is_put_back(prefect_server, tmp_path, monkeypatch):
    import gc

    import prefect_videogen.flows.batch as batch_module
    from prefect_videogen.batch.collector import YOUNG_THRESHOLD

    seen = []
    real = batch_module.produce_item

    async def observed(*args, **kwargs):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return await real(*args, **kwargs)

    monkeypatch.setattr(batch_module, "produce_item", observed)
    before = gc.get_threshold()
    source = PromptSource(rows=[{"prompt": f"a heron {tmp_path.name}"}, {"prompt": f"a crane {tmp_path.name}"}])
    result = await generate_videos(source, provider=renderer(tmp_path), storage=storage(tmp_path))
    assert result.counts == {"stored": 2}
    assert seen == [(max(YOUNG_THRESHOLD, before[0]), True)] * 2
    assert gc.get_threshold() == before
