"""The policy, the losses, and one LightningModule per algorithm."""

from modules.base import PolicyModule
from modules.dpo import DPO
from modules.errors import ConfigError, DataFileError, LightspielError
from modules.policy import Action, Policy, embedded_model_dir

__all__ = [
    "DPO",
    "Action",
    "ConfigError",
    "DataFileError",
    "LightspielError",
    "Policy",
    "PolicyModule",
    "embedded_model_dir",
]
