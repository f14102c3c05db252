"""Default voice prompts and the prompt catalogue.

Two halves:

* :func:`generate_prompts` synthesises the default prompts with **espeak-ng**
  and converts them with **pydub** into what Asterisk plays natively for a
  ``.wav`` file: 8 kHz, mono, 16-bit signed PCM (slin).  Layout::

      <dest>/manifest.json
      <dest>/pause.wav                    # pause_ms of silence between digit groups
      <dest>/<lang>/consent.wav           # recording / consent announcement
      <dest>/<lang>/protocol-is.wav       # "your protocol number is"
      <dest>/<lang>/request-*.wav         # the recording-request IVR (REQUEST_PROMPTS)
      <dest>/<lang>/language-*.wav        # the language menu after the announcement
      <dest>/pt_BR/digits/0.wav .. 9.wav  # Asterisk core sounds have no pt_BR digits
                                          # (nor ca, eu: generated too)

  Galician (``gl``) has texts but no espeak-ng voice: its prompts are recordings an
  admin makes (``custom/gl/<name>.wav``); generation lists them (:class:`RecordingNeeded`).

  Generation never touches ``<dest>/custom/``: that is where admins put their
  own recordings (``custom/<lang>/<name>.wav``), which win over the generated
  ones at play time.

* :class:`PromptCatalogue` resolves a prompt name and a channel language to a
  file, its sha256 (for the call's evidence record) and the ARI media URI.

Run ``python -m callproof.prompts DEST`` to generate the defaults.

The package is split by job: :mod:`.texts` (what the prompts say), :mod:`.generator`
(espeak-ng and pydub), :mod:`.catalogue` (the runtime lookup), :mod:`.files` (atomic
writes, hashes) and :mod:`.cli`.  Import from ``callproof.prompts``.

pydub is only imported by the generator, so the runtime catalogue does not need it.
pydub reads and writes plain PCM WAV itself (``wave`` module); it needs no ffmpeg here.
"""

from __future__ import annotations

from .catalogue import Prompt, PromptCatalogue, PromptNotFoundError, group_digits
from .cli import main
from .generator import (
    CHANNELS,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    EspeakNotFoundError,
    RecordingNeeded,
    generate_prompts,
    recordings_needed,
)
from .startup import MissingPromptsError, missing_prompts, require_prompts
from .texts import (
    CALL_PROMPTS,
    DEFAULT_CORE_DIGITS,
    DIGIT_WORDS,
    ESPEAK_VOICES,
    LANGUAGES,
    MENU_PROMPTS,
    PAUSE_NAME,
    PROMPT_TEXTS,
    REQUEST_PROMPTS,
    SUPPORTED_LANGUAGES,
)

__all__ = [
    "CALL_PROMPTS",
    "CHANNELS",
    "DEFAULT_CORE_DIGITS",
    "DIGIT_WORDS",
    "ESPEAK_VOICES",
    "LANGUAGES",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MENU_PROMPTS",
    "PAUSE_NAME",
    "PROMPT_TEXTS",
    "REQUEST_PROMPTS",
    "SAMPLE_RATE",
    "SAMPLE_WIDTH",
    "SUPPORTED_LANGUAGES",
    "EspeakNotFoundError",
    "MissingPromptsError",
    "Prompt",
    "PromptCatalogue",
    "PromptNotFoundError",
    "RecordingNeeded",
    "generate_prompts",
    "group_digits",
    "main",
    "missing_prompts",
    "recordings_needed",
    "require_prompts",
]
