"""Prefect flows."""

from prefect_videogen.flows.batch import BatchResult, generate_videos
from prefect_videogen.flows.generate import generate_video
from prefect_videogen.flows.resume import ResumeResult, resume_jobs

__all__ = ["BatchResult", "ResumeResult", "generate_video", "generate_videos", "resume_jobs"]
