"""Scores, rliable statistics and reports (and, later, the study runner).

Import what you need from the submodules: :mod:`.scores` (format, validation, normalisation) and
:mod:`.report` (aggregates, probability of improvement, significance, plots, ``report.md``).
"""
