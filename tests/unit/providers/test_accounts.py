"""One account-id rule for every provider and block; the ids existing blocks get never change.

The ids below were computed by the four per-provider helpers this one replaced. They are part of
submit cache keys, claims and ledger records: a changed id would make a rerun miss its cached job
and pay for it again.
"""

from __future__ import annotations

import pytest

from prefect_videogen.blocks import (
    APIFrameCredentials,
    ChatCompletionsCredentials,
    LocalRenderer,
    OpenAICredentials,
    ScenarioCredentials,
)
from prefect_videogen.providers.accounts import account_id_for

KEY = "sk-test-0123456789abcdef"
HASH = "c871f067542d"  # sha256(KEY)[:12]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (OpenAICredentials(api_key=KEY), f"key-sha256-{HASH}"),
        (OpenAICredentials(api_key=KEY, organization="org-1"), "org-1"),
        (OpenAICredentials(api_key=KEY, project="proj-9"), "proj-9"),
        (OpenAICredentials(api_key=KEY, organization="org-1", project="proj-9"), "org-1/proj-9"),
        (OpenAICredentials(api_key=KEY, organization="org-1", account_label="team-a"), "team-a"),
        (ChatCompletionsCredentials(api_key=KEY), f"key-sha256-{HASH}"),
        (ChatCompletionsCredentials(api_key=KEY, account_label="team-a"), "team-a"),
        (ScenarioCredentials(api_key=KEY, api_secret="secret"), f"scenario-{HASH}"),
        (ScenarioCredentials(api_key=KEY, api_secret="secret", account_label="team-a"), "team-a"),
        (APIFrameCredentials(api_key=KEY), f"apiframe-{HASH}"),
        (APIFrameCredentials(api_key=KEY, account_label="team-a"), "team-a"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_block_account_ids_are_todays_and_match_their_clients(block, expected):
    assert block.account_id() == expected
    # The client a block builds names the same account (the ledger and cache keys use both).
    client = block.get_client()
    assert client.account_id == expected


def test_the_rule():
    assert account_id_for(KEY) == f"key-sha256-{HASH}"
    assert account_id_for(KEY, prefix="apiframe-", label="") == f"apiframe-{HASH}"  # an empty label is no label
    assert account_id_for(KEY, prefix="x-", organization="o", project="") == "o"
    assert KEY not in account_id_for(KEY) and HASH in account_id_for(KEY)


def test_the_local_renderer_has_one_account():
    assert LocalRenderer().account_id() == LocalRenderer().account_id()
