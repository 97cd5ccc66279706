"""Media: the store of thumbnails and uploaded videos, frame sampling and image decoding, and
source timecode; shared by ingest, the gateway, training and the encoder like ``services.common``."""
