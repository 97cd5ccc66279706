"""Vectors on the wire: ``common.v1.Vector`` as ``repeated float`` (``values``) or as packed
little-endian float32 bytes (``packed``), read the same way whichever the writer chose."""

from __future__ import annotations

import numpy as np

from services.common.errors import InvalidInput
from vidsearch.common.v1 import common_pb2

WIRE_DTYPE = np.dtype("<f4")


def packed_vector(row: np.ndarray) -> common_pb2.Vector:
    """A vector whose components travel as bytes: no conversion to and from Python floats."""
    return common_pb2.Vector(packed=np.ascontiguousarray(row, dtype=WIRE_DTYPE).tobytes())


def vector_from_proto(msg: common_pb2.Vector) -> np.ndarray:
    """The components as float32, from ``packed`` or ``values``; both set is a malformed vector."""
    if msg.packed:
        if msg.values:
            raise InvalidInput("a vector sets both values and packed; set one")
        if len(msg.packed) % WIRE_DTYPE.itemsize:
            raise InvalidInput(f"packed vector has {len(msg.packed)} bytes, not a whole number of float32")
        return np.frombuffer(msg.packed, dtype=WIRE_DTYPE).astype(np.float32)
    return np.asarray(msg.values, dtype=np.float32)
