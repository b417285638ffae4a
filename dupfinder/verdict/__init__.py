"""The verdict stage: when two questions are duplicates. `rule` holds the one comparison of a score
with a threshold; `head` the pair head over the Siamese candidates (vectors + text features, numpy
only); `features` what the head reads."""

from dupfinder.verdict.rule import Verdict, is_duplicate

__all__ = ["Verdict", "is_duplicate"]
