"""curate.train: LoRA fine-tuning on a scan's clean set, with provenance.

Installed as `curate.train` (setuptools `package-dir`), so a user's own `train.py` never
shadows it. The training commands arrive with the training issue; a scan's `manifest.json`
and `curate.verify_manifest` are the contract they build on.
"""
