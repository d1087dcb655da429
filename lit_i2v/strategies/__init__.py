"""Transfer strategies of the survey, one file per method (paper cited at the top of each)."""

from lit_i2v.strategies.base import Strategy, freeze
from lit_i2v.strategies.frozen import Frozen
from lit_i2v.strategies.full_finetune import FullFinetune

__all__ = ["Frozen", "FullFinetune", "Strategy", "freeze"]
