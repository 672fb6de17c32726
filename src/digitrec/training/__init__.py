"""Training: one loop (`loop.fit`) driven by `Recipe`s (data, not code paths), batched
augmentation, and the bundled ensemble's recipes. Never imported by serving."""
