"""A minimal prompt set so that a soak call lasts ~2 s yet runs the whole flow.

Every prompt the call flow plays (consent, "protocol is", the pause, the ten pt_BR
digits) as a short file of silence in the catalogue's custom directory
(``custom/<lang>/<name>.wav`` wins over the generated prompts, docs/configuration.md).
"""

from __future__ import annotations

import wave
from pathlib import Path

NAMES = ["consent", "protocol-is", "pause", *(f"digits/{d}" for d in range(10))]


def write_short_prompts(custom_dir: Path, language: str, ms: int = 40) -> Path:
    for name in NAMES:
        path = custom_dir / language / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\0\0" * (8 * ms))
    return custom_dir
