"""Training core: corpus, tokenizer, pages, assignment, model presets, inner loop, compression,
outer step, checkpoints and evaluation. Pure functions and small classes; no networking between
neurons and no chain: of the project it imports only `protocol` (layering: docs/design.md)."""
