"""Training data and training for the video-text model: the synthetic corpus and its manifest."""
