"""Finding what to fix: label-issue scoring, quality flags, duplicates."""
