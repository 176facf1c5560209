"""hfssl: self-supervised pretraining of text and speech encoders on the Hugging Face stack."""

__version__ = "0.1.0"
