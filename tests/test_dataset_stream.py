"""Datasets by name, read as a stream: local jsonl/parquet/txt files and a local dataset
repository with subsets (read by the same `datasets.load_dataset(name, subset, split, revision)`
call a hub id goes through) become pages incrementally, with one digest on every node."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from template.config import build_workload, parse_config
from template.training import page_stream
from template.training.page_stream import streamed_page_store, write_pages
from template.training.text_stream import MAX_DOCUMENT_CHARS, DatasetError, DatasetSource, stream_documents
from template.training.tokenizer import train_bpe_tokenizer
from tests.fixture_text import fixture_text

LINES = fixture_text(400).splitlines()
VOCAB, PAGE_LEN = 300, 32


def write_parquet(path, texts, field="text", row_group_size=50):
    pq.write_table(pa.table({field: texts, "id": list(range(len(texts)))}), path, row_group_size=row_group_size)
    return path


def test_jsonl_parquet_and_txt_files_stream_their_rows_in_order(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in LINES))
    write_parquet(tmp_path / "a.parquet", LINES)
    (tmp_path / "a.txt").write_text("\n\n".join(LINES[:10]) + "\n")
    assert list(stream_documents(DatasetSource(str(tmp_path / "a.jsonl")))) == LINES
    assert list(stream_documents(DatasetSource(str(tmp_path / "a.parquet")))) == LINES  # 8 row groups
    assert [d.strip() for d in stream_documents(DatasetSource(str(tmp_path / "a.txt")))] == LINES[:10]  # paragraphs


def test_a_folder_of_files_is_read_in_name_order(tmp_path):
    write_parquet(tmp_path / "part-1.parquet", LINES[200:])
    write_parquet(tmp_path / "part-0.parquet", LINES[:200])
    assert list(stream_documents(DatasetSource(str(tmp_path)))) == LINES


def test_a_dataset_repository_is_read_by_subset_and_split_like_a_hub_dataset(tmp_path):
    for subset, texts in (("small", LINES[:50]), ("large", LINES[50:])):
        (tmp_path / subset).mkdir()
        write_parquet(tmp_path / subset / "train.parquet", texts)
        write_parquet(tmp_path / subset / "test.parquet", [t.upper() for t in texts[:5]])
    (tmp_path / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {s}\n  data_files:\n  - split: train\n    path: {s}/train.parquet\n"
        f"  - split: test\n    path: {s}/test.parquet\n" for s in ("small", "large")) + "---\n")
    assert list(stream_documents(DatasetSource(str(tmp_path), subset="large"))) == LINES[50:]
    assert list(stream_documents(DatasetSource(str(tmp_path), subset="small", split="test"))) == \
        [t.upper() for t in LINES[:5]]


def test_the_text_field_is_chosen_and_a_missing_or_non_text_one_is_refused(tmp_path):
    path = write_parquet(tmp_path / "body.parquet", LINES, field="body")
    assert next(stream_documents(DatasetSource(str(path), text_field="body"))) == LINES[0]
    with pytest.raises(DatasetError, match=r"no text field 'text' \(fields: \['body', 'id'\]\)"):
        next(stream_documents(DatasetSource(str(path))))
    with pytest.raises(DatasetError, match="field 'id' holds int, not text"):
        next(stream_documents(DatasetSource(str(path), text_field="id")))


def test_a_damaged_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DatasetError, match="broken.parquet"):
        list(stream_documents(DatasetSource(str(path))))


def test_an_overlong_row_is_read_in_bounded_pieces(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": "x" * (2 * MAX_DOCUMENT_CHARS + 5)}) + "\n")
    assert [len(d) for d in stream_documents(DatasetSource(str(path)))] == [MAX_DOCUMENT_CHARS, MAX_DOCUMENT_CHARS, 5]


def test_pages_are_the_token_stream_with_an_eos_after_each_document(tmp_path):
    tokenizer = train_bpe_tokenizer("\n".join(LINES), VOCAB)
    pages = write_pages(LINES[:40], tokenizer, PAGE_LEN, 10**9, VOCAB, tmp_path / "p.int32")
    expected = [t for line in LINES[:40] for t in (*tokenizer(line, add_special_tokens=False)["input_ids"],
                                                    tokenizer.eos_token_id)]
    written = page_stream.map_pages(tmp_path / "p.int32", PAGE_LEN)
    assert pages == len(expected) // PAGE_LEN == written.shape[0]
    assert written.reshape(-1).tolist() == expected[:pages * PAGE_LEN]


def test_max_tokens_bounds_what_is_read(tmp_path):
    tokenizer = train_bpe_tokenizer("\n".join(LINES), VOCAB)
    read = []

    def documents():
        for line in LINES * 500:  # 8M characters
            read.append(line)
            yield line

    pages = write_pages(documents(), tokenizer, PAGE_LEN, 5 * PAGE_LEN + 3, VOCAB, tmp_path / "p.int32")
    assert pages == 5
    assert sum(map(len, read)) < page_stream.BATCH_CHARS + 100  # one batch read: it stopped once the pages were full


def test_two_independent_nodes_get_the_same_digest_and_a_cached_store_is_not_read_again(tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "data.parquet", LINES)
    first, second = (streamed_page_store(tmp_path / cache, DatasetSource(str(path)), PAGE_LEN, VOCAB, 0.08)
                     for cache in ("node-a", "node-b"))
    assert first.digest == second.digest and first.num_pages > 20
    assert first.pages([0, 3]).dtype.is_floating_point is False and first.pages([0]).dtype.itemsize == 8
    monkeypatch.setattr(page_stream, "stream_documents", lambda source: pytest.fail("read again"))
    assert streamed_page_store(tmp_path / "node-a", DatasetSource(str(path)), PAGE_LEN, VOCAB, 0.08).digest == first.digest


def test_the_data_flags_name_the_dataset_its_field_and_its_bound(tmp_path):
    path = write_parquet(tmp_path / "data.parquet", LINES, field="content")
    config = parse_config(["--data.corpus", f"hub:{path}", "--data.text_field", "content", "--data.max_tokens", "640",
                           "--data.vocab_size", str(VOCAB), "--data.page_len", str(PAGE_LEN),
                           "--neuron.cache_dir", str(tmp_path / "cache")], ["neuron", "data", "model"], "test")
    work = build_workload(config)
    assert work.pages.num_pages == 640 // PAGE_LEN
    with pytest.raises(SystemExit, match="no text field 'text'"):
        build_workload(parse_config(["--data.corpus", f"hub:{path}", "--neuron.cache_dir", str(tmp_path / "c2")],
                                    ["neuron", "data", "model"], "test"))
