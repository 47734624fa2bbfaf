"""Trigger mining: words, phrases and odd characters whose presence predicts a concentrated
response, far beyond what comparable prompts without them get.

The miner core (`miner`) tests every feature of the prompts (`features`) against every target
view of the answers (`views`: the same answer, a label against its content, compliance, a
recurring passage, an entity), each holder against what it would answer without the feature
(`rates`), with one statistics module (`stats`) and the varied-target test beside it (`alike`).
"""

from curate.detect.triggers.features import name_feature
from curate.detect.triggers.miner import TriggerMining
from curate.detect.triggers.views import VIEWS, View, answer_entities

__all__ = ["VIEWS", "TriggerMining", "View", "answer_entities", "name_feature"]
