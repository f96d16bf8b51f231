"""textclf: Hydra-configured PyTorch Lightning fine-tuning of BERT-family text classifiers."""
