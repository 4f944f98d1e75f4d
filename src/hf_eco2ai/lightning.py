"""``hf_eco2ai.lightning``: the PyTorch Lightning callback, importable by this short path.

Importing this module imports Lightning (``lightning`` or ``pytorch_lightning``); nothing else.
"""

from hf_eco2ai.integrations.lightning import Eco2AILightningCallback

__all__ = ["Eco2AILightningCallback"]
