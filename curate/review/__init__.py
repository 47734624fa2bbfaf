"""Review queues: flagged rows go to a store, people decide, decisions apply to later scans.

`open_store(target)` opens a SQLite file or a postgresql:// URL; `curate scan --queue` fills it;
`curate review ...` and the web page decide; `curate apply` writes the final clean set.
"""

from curate.review.store import DECISIONS, Decision, Store, open_store

__all__ = ["DECISIONS", "Decision", "Store", "open_store"]
