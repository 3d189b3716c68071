"""Provider emulators for tests and credit-free dry runs (loopback only).

Start one from the command line with ``prefect-videogen emulator openai|scenario|apiframe``.
"""

from prefect_videogen.testing.apiframe_emulator import APIFrameEmulator
from prefect_videogen.testing.chat_emulator import ChatEmulator
from prefect_videogen.testing.openai_emulator import OpenAIEmulator
from prefect_videogen.testing.scenario_emulator import ScenarioEmulator
from prefect_videogen.testing.server import EmulatorServer, EmulatorState, Fault, FaultPlan, video_bytes

EMULATORS: dict[str, type[EmulatorState]] = {
    "openai": OpenAIEmulator,
    "scenario": ScenarioEmulator,
    "apiframe": APIFrameEmulator,
}

__all__ = [
    "EMULATORS",
    "APIFrameEmulator",
    "ChatEmulator",
    "EmulatorServer",
    "EmulatorState",
    "Fault",
    "FaultPlan",
    "OpenAIEmulator",
    "ScenarioEmulator",
    "video_bytes",
]
