"""Models: training, embeddings, prediction, run records."""
