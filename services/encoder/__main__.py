"""``python -m services.encoder`` runs the encoder (settings from VIDSEARCH_ENCODER_*)."""

from services.encoder.server import main

main()
