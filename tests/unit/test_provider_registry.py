"""The provider registry: what it lists, what it refuses, plugins, and the README table it renders."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import Field, SecretStr

from prefect_videogen import registry
from prefect_videogen.blocks import (
    APIFrameCredentials,
    LocalRenderer,
    OpenAICredentials,
    ProviderBlocks,
    ScenarioCredentials,
    VideoProviderBlock,
)
from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.providers.apiframe import APIFrameVideoProvider
from prefect_videogen.providers.base import FindsJobs, Idempotent, ListsJobs, Quotes, capabilities_of
from prefect_videogen.providers.local import LocalProvider
from prefect_videogen.registry import ProviderDocs, ProviderFlag, ProviderInfo

README = Path(__file__).resolve().parents[2] / "README.md"
DOCS = ProviderDocs(api="a test API", auth="none", cost="none")


class UnitClient(LocalProvider):
    name = "unit-test"


class UnitBlock(VideoProviderBlock):
    """A block for registry tests.

    Example:
        ```python
        UnitBlock.load("BLOCK_NAME")
        ```
    """

    provider_name = "unit-test"
    _block_type_slug = "videogen-unit-test-block"

    api_key: SecretStr = Field(description="A key.")
    region: str = Field(default="eu", description="A region.")

    def get_client(self) -> UnitClient:
        return UnitClient()

    def account_id(self) -> str:
        return "unit"


class Unannotated(VideoProviderBlock):
    """A block whose get_client says nothing of its client."""

    provider_name = "unannotated"
    _block_type_slug = "videogen-unannotated-block"

    def get_client(self):  # type: ignore[no-untyped-def]
        return UnitClient()

    def account_id(self) -> str:
        return "x"


@pytest.fixture
def unit_provider():
    info = registry.register(ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS, env={"api_key": "UNIT_KEY"}))
    yield info
    registry.unregister("unit-test")


def test_the_builtin_providers_in_order_with_their_blocks_and_environment():
    assert registry.names()[:4] == ("local", "openai", "scenario", "apiframe")
    assert registry.block_classes()[:4] == (LocalRenderer, OpenAICredentials, ScenarioCredentials, APIFrameCredentials)
    assert registry.get("scenario").env["api_secret"] == "SCENARIO_API_SECRET"
    assert registry.emulator_names()[:3] == ("openai", "scenario", "apiframe")
    assert registry.get("openai").emulator_class().__name__ == "OpenAIEmulator"


def test_capabilities_come_from_the_client_classes():
    caps = {info.name: info.capabilities() for info in registry.providers()}
    assert caps["scenario"] == ["quotes"]
    assert caps["apiframe"] == ["lists jobs", "finds jobs", "idempotent"]
    assert caps["openai"] == ["finds jobs"]
    assert caps["local"] == ["finds jobs", "idempotent"]
    assert ScenarioCredentials.supports(Quotes) and not APIFrameCredentials.supports(Quotes)
    client = APIFrameVideoProvider("afk_test", base_url="http://127.0.0.1:9")
    assert isinstance(client, ListsJobs) and isinstance(client, FindsJobs) and isinstance(client, Idempotent)
    assert client.idempotency_window().total_seconds() == 24 * 3600

    class Unlisted(APIFrameVideoProvider):
        list_active_jobs = None  # type: ignore[assignment]  # opting out of an inherited capability

    assert capabilities_of(Unlisted) == ["finds jobs", "idempotent"]


def test_an_unknown_provider_is_refused_naming_the_registered_ones():
    with pytest.raises(InvalidVideoRequest) as caught:
        registry.get("sora-direct")
    assert "provider='sora-direct'" in str(caught.value) and "apiframe" in str(caught.value)


def test_a_registered_provider_is_listed_and_its_block_built_from_the_environment(unit_provider):
    assert registry.names()[-1] == "unit-test" and registry.get("unit-test") is unit_provider
    assert registry.register(unit_provider) is unit_provider  # the same declaration again: nothing changes
    with pytest.raises(InvalidVideoRequest, match="set UNIT_KEY or pass --block NAME"):
        unit_provider.block_from_env({})
    block = unit_provider.block_from_env({"UNIT_KEY": "k"}, region="us", base_url=None)
    assert isinstance(block, UnitBlock) and block.region == "us"
    assert "| `unit-test` | `UnitBlock` | a test API |" in registry.markdown()
    with pytest.raises(InvalidVideoRequest, match="a provider with an emulator"):
        unit_provider.emulator_class()


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (ProviderInfo(name="other", block=UnitBlock, docs=DOCS), "UnitBlock.provider_name is 'unit-test'"),
        (ProviderInfo(name="Unit Test", block=UnitBlock, docs=DOCS), "lowercase letters"),
        (ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS, env={"secret": "X"}), "field 'secret'"),
        (ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS, env={"api_key": "lower"}), "'lower' is not an"),
        (
            ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS, flags=(ProviderFlag("--key", "api_key", "k"),)),
            "would set the secret 'api_key'",
        ),
        (
            ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS, flags=(ProviderFlag("-r", "region", "r"),)),
            "must look like --lower-case",
        ),
        (ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS, emulator="nocolon"), "'module:Class'"),
        (ProviderInfo(name="unannotated", block=Unannotated, docs=DOCS), "must be annotated with the VideoProvider"),
        (ProviderInfo(name="apiframe", block=APIFrameCredentials, docs=DOCS), "already registered"),
    ],
    ids=[
        "name-mismatch",
        "bad-name",
        "env-field",
        "env-var",
        "secret-flag",
        "flag-shape",
        "emulator",
        "annotation",
        "taken",
    ],
)
def test_an_unusable_declaration_is_refused_saying_why(info, message):
    with pytest.raises((ValueError, TypeError), match=message):
        registry.register(info)
    assert info.name not in registry.names() or info.name == "apiframe"


def test_the_flows_provider_annotation_follows_the_registry(unit_provider):
    [marker] = ProviderBlocks.__metadata__
    assert marker.block_classes()[-1] is UnitBlock
    registry.unregister("unit-test")
    assert UnitBlock not in marker.block_classes()


def test_providers_of_installed_packages_load_through_entry_points(tmp_path, monkeypatch, caplog):
    (tmp_path / "unit_plugin.py").write_text(
        textwrap.dedent(
            """
            from prefect_videogen.registry import ProviderInfo
            from test_provider_registry import DOCS, UnitBlock

            PROVIDER = ProviderInfo(name="unit-test", block=UnitBlock, docs=DOCS)
            """
        )
    )
    dist = tmp_path / "unit_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: unit-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[prefect_videogen.providers]\nunit = unit_plugin\nbroken = no_such_module_here:PROVIDER\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with caplog.at_level(logging.WARNING, logger="prefect_videogen.registry"):
            registry.load_entry_points()
        assert registry.get("unit-test").block is UnitBlock
        assert "provider plugin broken (no_such_module_here:PROVIDER) not loaded" in caplog.text
    finally:
        registry.unregister("unit-test")


def test_the_readme_provider_table_is_the_registry_rendering():
    text = README.read_text()
    start = text.index("<!-- provider table:")
    start = text.index("\n", start) + 1
    end = text.index("<!-- end of provider table -->")
    assert text[start:end] == registry.markdown(), "regenerate: python -m prefect_videogen.registry --markdown"


def test_python_m_registry_prints_the_table():
    printed = subprocess.run(
        [sys.executable, "-m", "prefect_videogen.registry", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert printed.stdout == registry.markdown() and "RuntimeWarning" not in printed.stderr
