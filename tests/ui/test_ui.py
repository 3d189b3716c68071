"""What a person sees in the Prefect UI, checked in headless Chromium against a real server.

Screenshots of every page go to the folder printed at the start (``-s`` shows it).
"""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.browser

# The UI loads its data after the page: wait for what a person would wait for, up to this long.
SHOWN_MS = 20_000


def artifacts_of(api, flow_run_id: str) -> list[dict]:
    found = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    found.raise_for_status()
    return found.json()


def test_single_run_shows_the_video_thumbnail_and_host(page, ui_server, ui_runs, api):
    artifacts = {a["type"]: a for a in artifacts_of(api, ui_runs["single"]) if a["key"].startswith("video-")}
    page.goto(f"{ui_server}/artifacts/artifact/{artifacts['markdown']['id']}")
    page.get_by_text("Stored on host").wait_for(timeout=SHOWN_MS)
    assert f"Stored on host {socket.gethostname()}" in page.inner_text("body")
    image = page.locator("img[alt='first frame']")
    image.wait_for(timeout=SHOWN_MS)
    page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 0)", timeout=SHOWN_MS)
    assert image.evaluate("i => i.naturalWidth") > 0
    # The prompt's "<running>" is shown, not swallowed as an HTML tag.
    assert "a red fox <running> through snow" in page.inner_text("body")
    assert "file://" not in page.content()


def test_cost_table_has_its_total_and_says_free(page, ui_server, ui_runs, api):
    costs = next(a for a in artifacts_of(api, ui_runs["single"]) if a["key"] == "videogen-costs")
    page.goto(f"{ui_server}/artifacts/artifact/{costs['id']}")
    page.get_by_text("TOTAL").wait_for(timeout=SHOWN_MS)
    text = page.inner_text("body")
    assert "free" in text and "billed" not in text


def test_batch_rerun_shows_cached_items_and_a_telling_name(page, ui_server, ui_runs):
    page.goto(f"{ui_server}/runs/flow-run/{ui_runs['rerun']}")
    page.get_by_text("generate-videos ui-batch").first.wait_for(timeout=SHOWN_MS)
    page.get_by_text("Task Runs", exact=True).first.click()
    page.get_by_text("Cached").first.wait_for(timeout=SHOWN_MS)
    assert page.get_by_text("Cached").count() >= 2  # both items: answered from the first run's cache
    assert "{subject}" not in page.inner_text("body")


def test_batch_summary_is_human(page, ui_server, ui_runs, api):
    summary = next(a for a in artifacts_of(api, ui_runs["batch"]) if a["key"] == "videogen-batch")
    page.goto(f"{ui_server}/artifacts/artifact/{summary['id']}")
    page.get_by_text("2 stored").first.wait_for(timeout=SHOWN_MS)
    assert "{'stored'" not in page.inner_text("body")


def test_artifacts_page_lists_the_item_artifacts_by_key(page, ui_server, ui_runs, api):
    keys = {a["key"] for a in artifacts_of(api, ui_runs["batch"])}
    item_keys = sorted(k for k in keys if k.startswith(("video-", "progress-")) and not k.endswith("-thumbnail"))
    assert len(item_keys) == 4, keys  # a video and a progress artifact per item
    page.goto(f"{ui_server}/artifacts")
    for key in item_keys:
        page.get_by_text(key, exact=True).first.wait_for(timeout=SHOWN_MS)


def test_deployment_form_shows_help_text_whole(page, ui_server, ui_runs):
    page.goto(f"{ui_server}/deployments/deployment/{ui_runs['deployment']}/run")
    help_text = page.get_by_text("videogen-PROVIDER (e.g. videogen-openai)")
    help_text.first.wait_for(timeout=SHOWN_MS)
    help_text.first.scroll_into_view_if_needed()
    assert "videogen- if it exists" not in page.inner_text("body")


def test_partly_failed_batch_is_visible_in_the_runs_list(page, ui_server, ui_runs, api):
    page.goto(f"{ui_server}/runs")
    page.get_by_text("generate-videos ui-partial").first.wait_for(timeout=SHOWN_MS)
    page.get_by_text("Partially failed").first.wait_for(timeout=SHOWN_MS)
    page.goto(f"{ui_server}/runs/flow-run/{ui_runs['partial']}")
    page.get_by_text("1 stored, 1 rejected").first.wait_for(timeout=SHOWN_MS)
    failed = [
        a
        for a in artifacts_of(api, ui_runs["partial"])
        if a["type"] == "progress" and "FAILED" in (a.get("description") or "")
    ]
    assert len(failed) == 1, "the rejected job's progress artifact says it failed"
    page.goto(f"{ui_server}/artifacts/artifact/{failed[0]['id']}")
    page.get_by_text("FAILED").first.wait_for(timeout=SHOWN_MS)


def test_block_catalog_has_the_real_blocks_only(page, ui_server, ui_runs):
    page.goto(f"{ui_server}/blocks/catalog")
    page.get_by_text("Videogen Local Renderer").first.wait_for(timeout=SHOWN_MS)
    text = page.inner_text("body")
    assert "Video Provider Block" not in text and "Strict Credentials Block" not in text
    assert ":meth:" not in text and ":class:" not in text
