"""Base models: the registry shared by the jobs API and the trainer, and the tiny local models."""
