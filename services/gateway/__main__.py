"""``python -m services.gateway`` runs the gateway (settings from VIDSEARCH_GATEWAY_*)."""

from services.gateway.server import main

main()
