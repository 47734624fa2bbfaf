"""JSON Schemas of curate's public outputs (package data)."""
