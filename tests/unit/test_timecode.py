"""SMPTE timecode: labels at 25 fps and drop-frame 29.97/59.94, and probing real files made by ffmpeg."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from services.common.errors import InvalidInput
from services.media.timecode import SourceClock, frames_of, gop_timecode, label_of, probe_clock
from tests.media import ffmpeg, make_video

NTSC = Fraction(30000, 1001)


@pytest.mark.parametrize(("start", "rate", "seconds", "expected"), [
    ("10:00:00:00", Fraction(25), 0.0, "10:00:00:00"),
    ("10:00:00:00", Fraction(25), 20.0, "10:00:20:00"),
    ("10:00:00:00", Fraction(25), 20.04, "10:00:20:01"),
    ("23:59:59:24", Fraction(25), 0.04, "00:00:00:00"),  # wraps at 24 h, as a tape machine does
    ("01:00:00;00", NTSC, 0.0, "01:00:00;00"),
    # 1800 frames after 01:00:00;00 is 01:01:00;02: frames ;00 and ;01 of minute 1 do not exist.
    ("01:00:00;00", NTSC, 1800 / NTSC, "01:01:00;02"),
    ("01:00:00;00", NTSC, 1799 / NTSC, "01:00:59;29"),
    # Every tenth minute keeps its frames ;00 and ;01; ten minutes are 17982 frames.
    ("00:00:00;00", NTSC, 17982 / NTSC, "00:10:00;00"),
    ("00:00:00;00", Fraction(60000, 1001), 3600 / Fraction(60000, 1001), "00:01:00;04"),
    ("00:00:00:00", Fraction(50), 1.0, "00:00:01:00"),
])
def test_clock_labels_an_instant_in_the_sources_own_timecode(start, rate, seconds, expected) -> None:
    assert SourceClock(start, rate).at(seconds) == expected


@pytest.mark.parametrize(("label", "fps", "drop"), [
    ("00:01:00;02", 30, True), ("09:59:59;29", 30, True), ("10:00:00;00", 30, True), ("00:01:00;04", 60, True),
    ("13:24:51:17", 25, False), ("00:00:00:00", 24, False),
])
def test_frames_and_labels_round_trip(label: str, fps: int, drop: bool) -> None:
    assert label_of(frames_of(label, fps, drop), fps, drop) == label


@pytest.mark.parametrize("bad", ["10:00:00", "10:60:00:00", "10:00:00:25", "ab:cd:ef:gh", ""])
def test_malformed_timecodes_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput):
        frames_of(bad, 25, False)


def test_mpeg2_gop_timecode_bits() -> None:
    # 01:00:00;02 as FFmpeg packs a GOP header: drop flag, hours, minutes, marker, seconds, frames.
    assert gop_timecode(0x01081002) == "01:00:00;02"


@pytest.mark.parametrize(("name", "args", "expected"), [
    ("tape.mxf", ["-c:v", "mpeg2video", "-timecode", "10:00:00:00"], SourceClock("10:00:00:00", Fraction(25))),
    ("df.mov", ["-c:v", "libx264", "-timecode", "01:00:00;00"], SourceClock("01:00:00;00", NTSC)),
    ("df.ts", ["-c:v", "mpeg2video", "-timecode", "01:00:00;02"], SourceClock("01:00:00;02", NTSC)),
])
def test_probe_reads_the_start_timecode_of_real_files(tmp_path: Path, name, args, expected) -> None:
    rate = "30000/1001" if expected.rate == NTSC else "25"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=96x64:r={rate}:d=1", *args, str(tmp_path / name))
    assert probe_clock(str(tmp_path / name)) == expected


def test_a_file_without_timecode_starts_at_zero(tmp_path: Path) -> None:
    path = make_video(tmp_path / "plain.mp4", seconds=1, fps=25)
    assert probe_clock(str(path)) == SourceClock("00:00:00:00", Fraction(25))
