"""Callbacks: thin Lightning adapters over plain, separately tested classes."""

from callbacks.curriculum import Curriculum, CurriculumSchedule, Stage
from callbacks.failure_replay import FailureReplay, ReplayBuffer
from callbacks.iterative import IterationSchedule, IterativeRegeneration
from callbacks.reasoning_eval import ReasoningEval
from callbacks.tournament import Tournament, TournamentCallback

__all__ = [
    "Curriculum",
    "CurriculumSchedule",
    "FailureReplay",
    "IterationSchedule",
    "IterativeRegeneration",
    "ReasoningEval",
    "ReplayBuffer",
    "Stage",
    "Tournament",
    "TournamentCallback",
]
