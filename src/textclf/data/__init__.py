"""The data layer: where texts come from (packaged sets, the user's files, Hugging Face datasets), how they
are cleaned, split and labelled, and how they become tokens, windows and padded batches. No Lightning here:
`textclf.training.datamodule` wires these pieces into a LightningDataModule."""

from textclf.lazy import exports

API = {
    "Source": "textclf.data.sources",
    "HuggingFaceDataset": "textclf.data.hf_datasets",
    "LabelSet": "textclf.data.labels",
    "Scores": "textclf.data.labels",
    "load_tokenizer": "textclf.data.tokenization",
    "tokenize_cached": "textclf.data.tokenization",
    "TokenizedSplit": "textclf.data.batching",
    "PadCollator": "textclf.data.batching",
    "LengthBucketBatchSampler": "textclf.data.batching",
}
__all__ = list(API)
# the flat layout's `textclf.data` held the DataModule
__getattr__ = exports(
    __name__, API, {"TextClassificationDataModule": "textclf.training.datamodule:TextClassificationDataModule"}
)
