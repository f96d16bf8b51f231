"""A randomly initialised encoder of bert-base's shape (12 layers, 768 wide) with the packaged MiniLM's
tokenizer, saved to a directory: what the benchmark scripts use to measure base-size training offline."""

from __future__ import annotations

from pathlib import Path


def build_base_model(directory: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from textclf.pretrained import resolve_pretrained

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained("all-MiniLM-L6-v2"))
    tokenizer.save_pretrained(directory)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(directory)
    return directory
