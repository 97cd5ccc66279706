"""``python -m services.ingest`` runs the ingest API (settings from VIDSEARCH_INGEST_*)."""

from services.ingest.server import main

if __name__ == "__main__":
    main()
