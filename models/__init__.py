"""The model bundled with skinedge, installed as package data ``skinedge.bundled``."""
