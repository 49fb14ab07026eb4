"""Clients of the node API: the HTTP client, the terminal and the guardian clients."""
