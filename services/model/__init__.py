"""The CLIP4Clip-style video-text model: towers, temporal aggregation, checkpoints.

Model hubs are never reachable from the encoder, so the Hugging Face libraries are put in
offline mode before any submodule imports them; weights come from local files only.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
