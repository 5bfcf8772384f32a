"""Scores, rliable statistics, reports, resumable studies and seed evaluation of saved models.

Import what you need from the submodules: :mod:`.scores` (format, validation, normalisation), :mod:`.report`
(aggregates, probability of improvement, significance, plots, ``report.md``), :mod:`.study` (the resumable
study runner, local process pool or Ray) and :mod:`.model_eval` (seeds and head ablation of one model);
:mod:`.commands` holds their ``sb3ma`` subcommands.
"""
