"""Callbacks: thin Lightning adapters over plain, separately tested classes."""

from callbacks.curriculum import Curriculum, CurriculumSchedule, Stage
from callbacks.failure_replay import FailureReplay, ReplayBuffer
from callbacks.iterative import IterationSchedule, IterativeRegeneration
from callbacks.tournament import Tournament, TournamentCallback

__all__ = [
    "Curriculum",
    "CurriculumSchedule",
    "FailureReplay",
    "IterationSchedule",
    "IterativeRegeneration",
    "ReplayBuffer",
    "Stage",
    "Tournament",
    "TournamentCallback",
]
