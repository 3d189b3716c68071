"""Batches: prompt-source expansion and the per-item manifest (plain Python, no Prefect)."""
