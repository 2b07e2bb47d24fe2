"""lotr_labeler: class names in, a trained image classifier out."""

__version__ = "0.1.0"
