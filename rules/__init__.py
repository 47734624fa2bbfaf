"""curate's shipped rule files (package data, installed as `curate.rules`)."""
