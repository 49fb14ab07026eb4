"""The HTTP API under ``/v1/``: aiohttp handlers, thin adapters over the node's application."""
