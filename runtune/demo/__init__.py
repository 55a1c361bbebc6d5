"""The demo image-classification set the local platform offers as a ready-made dataset."""
