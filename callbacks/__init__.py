"""Callbacks: thin Lightning adapters over plain, separately tested classes."""

from callbacks.iterative import IterationSchedule, IterativeRegeneration
from callbacks.tournament import Tournament, TournamentCallback

__all__ = ["IterationSchedule", "IterativeRegeneration", "Tournament", "TournamentCallback"]
