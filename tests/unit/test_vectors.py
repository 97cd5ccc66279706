"""Vectors on the wire: packed float32 bytes and repeated floats read back to the same array."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.common.vectors import packed_vector, vector_from_proto
from services.index.convert import record_from_proto
from vidsearch.common.v1 import common_pb2


def test_packed_and_repeated_float_read_the_same() -> None:
    row = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    packed = common_pb2.Vector.FromString(packed_vector(row).SerializeToString())
    repeated = common_pb2.Vector.FromString(common_pb2.Vector(values=row.tolist()).SerializeToString())
    assert len(packed.packed) == 512 * 4 and not packed.values
    np.testing.assert_array_equal(vector_from_proto(packed), row)
    np.testing.assert_array_equal(vector_from_proto(repeated), row)
    assert vector_from_proto(packed).dtype == np.float32 and vector_from_proto(packed).flags.writeable


def test_packed_bytes_are_little_endian_whatever_the_input_order() -> None:
    big_endian = np.array([1.5, -2.0], dtype=">f4")
    assert packed_vector(big_endian).packed == np.array([1.5, -2.0], dtype="<f4").tobytes()


@pytest.mark.parametrize(("vector", "message"), [
    (common_pb2.Vector(values=[1.0], packed=b"\0\0\0\0"), "sets both values and packed"),
    (common_pb2.Vector(packed=b"\0\0\0"), "3 bytes, not a whole number of float32"),
])
def test_malformed_vectors_are_invalid_input(vector, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        vector_from_proto(vector)


def test_the_index_reads_packed_clip_records() -> None:
    row = np.linspace(-1, 1, 64, dtype=np.float32)
    record = record_from_proto(common_pb2.ClipRecord(clip_id="v:000000000", video_id="v", vector=packed_vector(row)))
    np.testing.assert_array_equal(record.vector, row)
