"""GetClip's cut: a clip's MP4 starts at the clip's own first frame, by edit list or by re-encoding."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from services.common.errors import NotFound
from services.gateway.playback import cut_clip
from tests.media import make_video


def decoded(data: bytes) -> tuple[str, list[float], list[float]]:
    """The codec, the frame times and each frame's mean luma of an MP4."""
    with av.open(io.BytesIO(data)) as container:
        codec = container.streams.video[0].codec_context.name
        frames = [(float(f.time), float(np.mean(f.to_ndarray(format="gray")))) for f in container.decode(video=0)]
    return codec, [t for t, _ in frames], [y for _, y in frames]


def source_luma(path: Path) -> dict[float, float]:
    with av.open(str(path)) as container:
        return {round(float(f.time), 3): float(np.mean(f.to_ndarray(format="gray")))
                for f in container.decode(video=0)}


@pytest.mark.parametrize(("suffix", "codec", "expected_codec"), [
    (".mp4", "libx264", "h264"),  # stream copy behind an edit list
    (".mxf", "mpeg2video", "h264"),  # no browser plays MPEG-2: re-encoded
])
def test_clip_starts_at_its_first_frame_not_the_keyframe_before(tmp_path: Path, suffix, codec,
                                                                 expected_codec) -> None:
    # Luma rises by 4 each frame, keyframes every 25 frames (1 s): a clip from 1.4 s starts mid-GOP.
    source = make_video(tmp_path / f"counter{suffix}", seconds=4, fps=25, size=(64, 64), pattern="counter",
                        codec=codec, gop=25)
    got_codec, times, luma = decoded(cut_clip(source, 1.4, 2.6))
    truth = source_luma(source)
    assert got_codec == expected_codec
    assert times[0] == 0.0
    assert abs(luma[0] - truth[1.4]) < 2.0 and abs(luma[0] - truth[1.0]) > 8  # frame 35, not keyframe 25
    # To the clip's end; a copied stream may trail it by the reference frame its last B-frames need.
    assert 1.1 <= times[-1] <= 1.2 + 0.25


def test_a_missing_source_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        cut_clip(tmp_path / "gone.mp4", 0, 1)
