"""`tokenizer.model` for the tiny models: their byte-fallback BPE (`tokenizer.json`) written as the
SentencePiece model the published Gemma checkpoints ship beside it.

llama.cpp's converter reads a Gemma vocabulary from `tokenizer.model` (its SentencePiece path, the
one every real Gemma 3 checkpoint takes); without it, it falls back to a GPT-2 style path that only
knows the pre-tokenizers of published models. The pieces keep their ids, and a merged piece scores
minus the rank of the merge that made it, so SentencePiece's highest-score-first merging makes the
same merges, in the same order, as the BPE's lowest-rank-first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SPM_FILE = "tokenizer.model"
_BYTE_PIECE = re.compile(r"^<0x[0-9A-F]{2}>$")


def write_sentencepiece_model(folder: Path) -> Path:
    """Write `folder/tokenizer.model` from `folder/tokenizer.json` (and its special tokens)."""
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    model = tokenizer["model"]
    if model["type"] != "BPE" or not model.get("byte_fallback"):
        raise ValueError(f"{folder}: only a byte-fallback BPE tokenizer converts to SentencePiece")
    pieces = dict(model["vocab"])
    specials = {token["content"]: token["id"] for token in tokenizer["added_tokens"] if token["special"]}
    pieces.update(specials)
    by_id = sorted(pieces.items(), key=lambda item: item[1])
    if [token_id for _, token_id in by_id] != list(range(len(by_id))):
        raise ValueError(f"{folder}: token ids are not dense")
    merge_rank = {}
    for rank, merge in enumerate(model["merges"]):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        merge_rank.setdefault(left + right, rank)

    proto = spm_pb2.ModelProto()
    unk = model.get("unk_token") or "<unk>"
    kinds = spm_pb2.ModelProto.SentencePiece.Type
    for piece, _ in by_id:
        entry = proto.pieces.add()
        entry.piece = piece
        if piece == unk:
            entry.type, entry.score = kinds.UNKNOWN, 0.0
        elif piece in specials:
            entry.type, entry.score = kinds.CONTROL, 0.0
        elif _BYTE_PIECE.match(piece):
            entry.type, entry.score = kinds.BYTE, 0.0
        else:
            entry.type = kinds.NORMAL
            entry.score = -float(merge_rank[piece]) if piece in merge_rank else 0.0

    trainer = proto.trainer_spec
    trainer.model_type = spm_pb2.TrainerSpec.ModelType.BPE
    trainer.vocab_size = len(by_id)
    trainer.byte_fallback = True
    trainer.unk_id = pieces[unk]
    trainer.bos_id = pieces.get("<bos>", -1)
    trainer.eos_id = pieces.get("<eos>", -1)
    trainer.pad_id = pieces.get("<pad>", -1)
    trainer.unk_piece, trainer.bos_piece, trainer.eos_piece, trainer.pad_piece = unk, "<bos>", "<eos>", "<pad>"
    # As the tokenizer.json normalises: spaces become ▁, nothing else changes, no space is prepended.
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = False
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True

    path = folder / SPM_FILE
    path.write_bytes(proto.SerializeToString())
    return path
