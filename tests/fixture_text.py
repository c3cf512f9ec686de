"""A small deterministic English-like text for fast tokenizer/page tests."""
import random

_WORDS = ("the king queen lord lady good night day love death sword crown heart fair "
          "sweet noble brother father mother son daughter war peace blood honour grace "
          "speak come go know tell thee thou thy my our your his her").split()


def fixture_text(lines: int = 600, seed: int = 0) -> str:
    rng = random.Random(seed)  # test data only; protocol code never uses `random`
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
        out.append(" ".join(words).capitalize() + rng.choice(".,;!?"))
    return "\n".join(out) + "\n"
