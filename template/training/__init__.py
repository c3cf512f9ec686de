"""Training core: corpus, tokenizer, pages, assignment, model presets, inner loop, compression,
outer step, checkpoints and evaluation. Pure functions and small classes; no networking and no
chain imports (DESIGN.md: template.training never imports template.chain)."""
