"""Bench: labelled poison mixes (real BackdoorLLM poisons, or attacks curate plants itself) and
the scores that say how well a scan finds them."""
