"""``python -m services.index`` runs one index shard (settings from VIDSEARCH_INDEX_*)."""

from services.index.server import main

main()
