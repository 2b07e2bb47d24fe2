"""Getting images in: search, download, imports, export."""
