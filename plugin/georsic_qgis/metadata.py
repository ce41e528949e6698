"""Reading this plugin's own metadata.txt (its version, for the provider)."""

from __future__ import annotations

import configparser
import os

METADATA_PATH = os.path.join(os.path.dirname(__file__), "metadata.txt")


def read_metadata() -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(METADATA_PATH, encoding="utf-8")
    return dict(parser["general"]) if parser.has_section("general") else {}


def plugin_version() -> str:
    return read_metadata().get("version", "")
