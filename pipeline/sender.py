"""Moved to ``pipeline.producer.sender``; this alias keeps the import the README once showed working."""

from pipeline.producer.sender import FullPolicy, SenderConfig

__all__ = ["FullPolicy", "SenderConfig"]
