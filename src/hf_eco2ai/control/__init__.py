"""Acting on a run's carbon figures: budgets, in-process alerts, fleet alerts and the responder.

Importing this package imports nothing heavy; the Trainer callback lives in
:mod:`hf_eco2ai.control.budget` and needs ``transformers``, the responder's Kubernetes calls
need ``kubernetes``.
"""
