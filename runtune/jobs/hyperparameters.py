"""OpenAI's `auto` hyperparameters, resolved once when a job is created so the job shows (and the
trainer uses) the numbers it actually trains with."""

from __future__ import annotations

from runtune.schemas.jobs import Hyperparameters


def resolve(given: Hyperparameters, train_examples: int) -> Hyperparameters:
    # Small sets need more passes to move a model; large ones converge within one.
    epochs = given.n_epochs if given.n_epochs != "auto" else (3 if train_examples < 10_000 else 1)
    batch = given.batch_size if given.batch_size != "auto" else (4 if train_examples < 1_000 else 8)
    multiplier = given.learning_rate_multiplier if given.learning_rate_multiplier != "auto" else 1.0
    return Hyperparameters(n_epochs=epochs, batch_size=batch, learning_rate_multiplier=multiplier)
