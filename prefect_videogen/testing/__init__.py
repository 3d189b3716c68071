"""Provider emulators for tests and credit-free dry runs (loopback only)."""

from prefect_videogen.testing.server import EmulatorServer, EmulatorState, Fault, FaultPlan, video_bytes

__all__ = ["EmulatorServer", "EmulatorState", "Fault", "FaultPlan", "video_bytes"]
