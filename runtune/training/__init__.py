"""The trainer's library: config, chat formatting and loss masks, data, the optimizer step (loop),
checkpoints, reporting, trackers, evaluation and export. The recipe that reads top to bottom is
`jobs/trainer/recipe.py`."""
