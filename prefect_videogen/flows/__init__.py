"""Prefect flows."""

from prefect_videogen.flows.generate import generate_video

__all__ = ["generate_video"]
