"""Converting a recording for export by streaming it through ffmpeg.

The recording's bytes (read from the plaintext file, or decrypted chunk by chunk from its
age file) are written into ffmpeg's standard input while they are hashed; ffmpeg writes
the converted file itself.  Neither this process nor ffmpeg holds the whole recording:
a 3-hour call exports in the memory of a few chunks (docs/benchmarks.md).  pydub, used
before, loads the whole decoded recording into memory and was dropped here for that.

The command is a fixed argv (no shell): the formats come from a fixed table, the output
is a temporary path callproof created, and the tags are built by callproof from the
protocol and the call's start time; each tag value is still stripped of control
characters so nothing can smuggle a line or an option into ffmpeg's metadata.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO, TypeVar

T = TypeVar("T")

# ffmpeg settings per export format: (muxer, encoder options)
_OUTPUT = {"mp3": ("mp3", ["-acodec", "libmp3lame", "-b:a", "64k", "-id3v2_version", "4"]),
           "ogg": ("ogg", ["-acodec", "libvorbis"]),
           "wav": ("wav", ["-acodec", "pcm_s16le"])}
_DEMUXER = re.compile(r"[a-z0-9]{1,16}")
_TAG_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ERROR_TAIL = 2000


class ConversionFailed(Exception):
    """ffmpeg could not convert the recording (its last error lines in the message)."""


def ffmpeg_argv(source_format: str, fmt: str, tags: dict[str, str], output: Path) -> list[str]:
    """The ffmpeg command converting standard input (``source_format``) into ``output``."""
    if fmt not in _OUTPUT:
        raise ValueError(f"unknown export format {fmt!r}")
    if not _DEMUXER.fullmatch(source_format):
        raise ValueError(f"not a recording format: {source_format!r}")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ConversionFailed("ffmpeg is not installed (Debian package ffmpeg)")
    muxer, options = _OUTPUT[fmt]
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", source_format, "-i", "pipe:0", "-vn", *options]
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(key):
            raise ValueError(f"not a tag name: {key!r}")
        argv += ["-metadata", f"{key}={_CONTROL.sub(' ', value)}"]
    return [*argv, "-f", muxer, str(output)]


class _Pipe:
    """ffmpeg's stdin as a write-only file that never raises once ffmpeg has gone: the
    feeder goes on reading (and hashing) the whole source so its check still happens."""

    def __init__(self, stdin: IO[bytes]) -> None:
        self._stdin: IO[bytes] | None = stdin

    def write(self, data: bytes) -> int:
        if self._stdin is not None:
            try:
                self._stdin.write(data)
            except (BrokenPipeError, ValueError):
                self.close()
        return len(data)

    def close(self) -> None:
        stdin, self._stdin = self._stdin, None
        if stdin is not None:
            try:
                stdin.close()
            except BrokenPipeError:
                pass


def convert(feed: Callable[[BinaryIO], T], source_format: str, fmt: str, tags: dict[str, str],
            output: Path) -> tuple[T, str | None]:
    """Run ffmpeg writing ``output`` while ``feed(pipe)`` writes the source into it.

    Returns what ``feed`` returned and None, or ffmpeg's error when it failed (the caller
    checks the source first: a changed recording is an integrity error, not a conversion
    one).  An exception from ``feed`` kills ffmpeg and is raised."""
    argv = ffmpeg_argv(source_format, fmt, tags, output)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                close_fds=True)
        assert proc.stdin is not None
        pipe = _Pipe(proc.stdin)
        try:
            fed = feed(pipe)  # type: ignore[arg-type]
        except BaseException:
            proc.kill()
            pipe.close()
            proc.wait()
            raise
        pipe.close()
        code = proc.wait()
        if code == 0:
            return fed, None
        errors.seek(0)
        text = errors.read().decode("utf-8", "replace")[-_ERROR_TAIL:].strip()
    return fed, f"ffmpeg exited with status {code}: {text or 'no message'}"
