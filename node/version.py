"""The version of Custos this code is, as the installed package states it."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    try:
        return metadata.version("custos")
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        return "0+unknown"
