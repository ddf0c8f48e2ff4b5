"""Pixel codecs used by dicube files."""
