"""An imported published model through the whole local stack: ingest samples frames the way the
model's source crops them, and text, image and video searches score clips as the reference
library would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.local.stack import LocalStack, StackConfig
from services.model.importers import import_model
from tests.media import ffmpeg
from tests.published_models import SENTENCES, hf_clip, photo_paths
from tests.system.stack import SystemStack, ingest_and_wait
from vidsearch.encoder.v1 import encoder_pb2
from vidsearch.gateway.v1 import gateway_pb2
from vidsearch.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.slow


def test_an_imported_hf_clip_serves_text_image_and_video_search_through_the_stack(tmp_path: Path) -> None:
    # A Hugging Face CLIPModel floors an odd crop margin; 190x128 square-pixel frames resize to 95x64 at 64 px,
    # a margin of 31 columns, so ingest must crop as the encoder's Info says or the scores drift.
    published = hf_clip(tmp_path / "source")
    import_model(tmp_path / "model", **published.import_kwargs)
    library = tmp_path / "library"
    library.mkdir()
    video, still = library / "still.mkv", tmp_path / "still.png"
    ffmpeg("-loop", "1", "-i", str(photo_paths()[0]), "-t", "4", "-r", "5", "-vf", "scale=190:128,setsar=1",
           "-c:v", "ffv1", "-pix_fmt", "gbrp", str(video))  # lossless RGB: the still is exactly each frame
    ffmpeg("-i", str(video), "-frames:v", "1", str(still))
    config = StackConfig(data_dir=tmp_path / "stack", checkpoint=tmp_path / "model", n_shards=1,
                         extra_env={"VIDSEARCH_INGEST_ALLOWED_ROOTS": str(library)})
    with LocalStack(config) as stack:
        system = SystemStack(stack, library, "", {})
        try:
            assert system.encoder().Info(encoder_pb2.InfoRequest(), timeout=10).crop == "floor"
            job = ingest_and_wait(system.ingest_api(), video, "still", 2.0)
            assert job.state == ingest_pb2.JOB_STATE_SUCCEEDED, job.error
            gateway = system.gateway()
            queries = {
                "text": gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=SENTENCES[0]), top_k=5),
                "image": gateway_pb2.SearchRequest(image=still.read_bytes(), top_k=5),
                "video": gateway_pb2.SearchRequest(video=gateway_pb2.VideoQuery(data=video.read_bytes()), top_k=5),
            }
            hits = {name: gateway.Search(request, timeout=120).hits for name, request in queries.items()}
        finally:
            system.close()
    assert all(len(found) == 2 for found in hits.values()), hits  # both 2-second clips of the video
    # A still clip keeps its frame's embedding, through ingest and through the query path alike.
    assert min(h.score for h in hits["image"]) >= 0.9999
    assert min(h.score for h in hits["video"]) >= 0.9999
    # The text score is the reference library's cosine between the sentence and the frame.
    frame = Image.open(still).convert("RGB")
    expected = float(published.texts([SENTENCES[0]])[0] @ published.images([frame])[0])
    np.testing.assert_allclose([h.score for h in hits["text"]], expected, atol=1e-4)
