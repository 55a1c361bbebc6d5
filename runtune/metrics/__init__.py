"""Evaluation metrics, shared by the trainer and the inference service (pure Python, no torch).

Stable public API (the inference service imports these; change them only compatibly):

- `classification.normalise(text)`: lower case, punctuation to spaces, whitespace collapsed.
- `classification.map_to_label(answer, labels)`: the label a free-form answer names, or None.
- `classification.classification_report(truth, predicted, labels)`: accuracy, macro-F1, per-class
  precision/recall/F1/support, confusion matrix (Firestore-safe rows), `unmapped_rate`, `samples`.
- `text.exact_match`, `text.token_f1`, `text.rouge_l` (per pair, normalised text), `text.perplexity`
  (from a summed negative log-likelihood and a token count), `text.generation_report` (their means).

Label *scoring* (the log-likelihood of each label after the prompt) needs the model, so it lives with
it: `runtune.training.evaluation.score_examples` in the trainer, the engine's `prompt_logprobs` in the
inference service; both produce the predictions `classification_report` takes.
"""
