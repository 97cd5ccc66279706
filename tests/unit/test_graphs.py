"""Graph-replayed image batches: buckets, padding and fall-back, with an eager stand-in for capture.

The stand-in behaves as a captured graph does: the work runs again on the same static input and
writes the same static output tensor. The real capture (``capture_cuda_graph``) runs on CUDA only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.encoder.graphs import GraphedImages, bucket_sizes, capture_cuda_graph
from services.encoder.runner import ModelRunner
from services.model.checkpoint import build_model
from services.model.config import tiny

SIZE = 64


def _static_capture(work):
    """Like a graph: one output tensor, overwritten in place on each replay."""
    output = work().clone()

    def replay() -> torch.Tensor:
        output.copy_(work())
        return output

    return replay


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny("seqTransf")).eval()


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8))


def test_bucket_sizes() -> None:
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert bucket_sizes(24) == [1, 2, 4, 8, 16, 24]


@torch.inference_mode()
def test_every_batch_size_matches_eager_whatever_the_bucket_held_before(model) -> None:
    graphed = GraphedImages(model.encode_images, image_size=SIZE, device=torch.device("cpu"), max_batch_size=8,
                            capture=_static_capture)
    assert graphed.sizes == [1, 2, 4, 8]
    for n in (8, 3, 1, 5, 2, 8, 12):  # bigger buckets first: stale rows from earlier batches stay behind
        images = _images(n, seed=n)
        assert torch.allclose(graphed(images), model.encode_images(images), atol=1e-6)
    # A returned batch is the caller's: the next replay does not overwrite it.
    first = graphed(_images(2, seed=1))
    kept = first.clone()
    graphed(_images(2, seed=2))
    assert torch.equal(first, kept)


@torch.inference_mode()
def test_buckets_that_fail_or_disagree_fall_back_to_eager(model, caplog) -> None:
    def flaky_capture(work):
        rows = work().shape[0]
        if rows == 2:
            raise RuntimeError("operation not permitted when stream is capturing")
        replay = _static_capture(work)
        return (lambda: replay() + 1.0) if rows == 4 else replay  # the 4-bucket graph computes something else

    graphed = GraphedImages(model.encode_images, image_size=SIZE, device=torch.device("cpu"), max_batch_size=8,
                            capture=flaky_capture)
    assert graphed.sizes == [1, 8]
    assert "batches of 2" in caplog.text and "batches of 4 differs" in caplog.text
    for n in (2, 3, 4):  # now served by the 8 bucket
        images = _images(n, seed=10 + n)
        assert torch.allclose(graphed(images), model.encode_images(images), atol=1e-6)


def test_runner_serves_images_through_the_graphs(model) -> None:
    graphed = GraphedImages(model.encode_images, image_size=SIZE, device=torch.device("cpu"), max_batch_size=4,
                            capture=_static_capture)
    images = list(_images(3, seed=5).numpy())
    rows = ModelRunner(model, graphed).encode_images(images)
    eager = ModelRunner(model).encode_images(images)
    assert len(rows) == 3 and all(np.allclose(a, b, atol=1e-6) for a, b in zip(rows, eager, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@torch.inference_mode()
def test_cuda_graphs_match_eager_on_a_gpu(model) -> None:
    gpu = build_model(tiny("seqTransf"))
    gpu.load_state_dict(model.state_dict())
    gpu = gpu.eval().to("cuda", torch.float16)
    graphed = GraphedImages(gpu.encode_images, image_size=SIZE, device=gpu.device, max_batch_size=8,
                            capture=capture_cuda_graph)
    assert graphed.sizes == [1, 2, 4, 8]
    for n in (1, 3, 8):
        images = _images(n, seed=20 + n)
        assert torch.allclose(graphed(images).cpu(), gpu.encode_images(images).cpu(), atol=2e-3)
