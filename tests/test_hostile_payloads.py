"""Crafted contribution payloads: every malformed one is refused with PayloadError, never
anything else, and an oversized header is refused before it costs memory."""
from __future__ import annotations

import json
import random
import struct
import tracemalloc

import pytest
import torch

from protocol.limits import (MAX_CONTRIBUTION_BYTES, MAX_PAYLOAD_HEADER_BYTES, MAX_PAYLOAD_METADATA_BYTES,
                             MAX_PAYLOAD_TENSORS, MAX_TENSOR_NAME_CHARS)
from protocol.payload import PayloadError, decode_tensors, encode_tensors, read_metadata

from bench.hostile_attacks import DEEP, blob, entry, one_tensor, with_metadata  # the live campaign sends these too

LIMIT = MAX_CONTRIBUTION_BYTES


VALID = encode_tensors({"w|idx": torch.arange(8, dtype=torch.uint8), "w|scale": torch.ones(2, dtype=torch.float16)},
                       {"round_index": 3, "unit": {"kind": "full"}})

CORPUS: dict[str, object] = {
    # length prefix lies and truncation
    "empty": b"",
    "short prefix": b"\x01\x00\x00",
    "zero header length": struct.pack("<Q", 0) + b"{}",
    "header length past end": blob(b"{}", length=1000),
    "header length 2**64-1": blob(b"{}", length=2**64 - 1),
    "header length one too long": blob(b'{"t":{}}', length=9),
    "truncated in header": VALID[:20],
    "truncated in data": VALID[:-3],
    "data left over": VALID + b"\x00",
    # not a JSON object
    "not json": blob(b"nope!"),
    "bad utf-8": blob(b'{"\xff\xfe": 1}'),
    "utf-16 json": blob('{"t": 1}'.encode("utf-16")),
    "header is a list": blob(b"[]"),
    "header is a string": blob(b'"x"'),
    "header is null": blob(b"null"),
    "header is a number": blob(b"12"),
    "duplicate tensor names": blob(b'{"t": ' + json.dumps(entry()).encode() + b', "t": '
                                   + json.dumps(entry()).encode() + b"}", b"\x00" * 4),
    "huge int literal": blob(b'{"t": {"dtype": "U8", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}',
                             b"\x00" * 4),
    # nesting
    "header nested 200k deep (lists)": blob(b"[" * DEEP + b"]" * DEEP),
    "header nested 200k deep (objects)": blob(b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    "entry nested deep": blob(b'{"t": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "metadata value nested 200k deep": with_metadata({"meta": "[" * DEEP + "]" * DEEP}),
    "meta nested 5000 deep within the size limit": with_metadata({"meta": "[" * 5000 + "]" * 5000}),
    "meta nested just past the depth cap": with_metadata({"meta": '{"a":' * 9 + "1" + "}" * 9}),
    "metadata object nested deep": blob(b'{"__metadata__": ' + b'{"a":' * 50 + b'"x"' + b"}" * 50 + b"}"),
    # huge header
    "header over the cap": blob(b" " * (MAX_PAYLOAD_HEADER_BYTES + 1)),
    # metadata types
    "metadata list": with_metadata(["meta"]),
    "metadata string": with_metadata("meta"),
    "metadata null": with_metadata(None),
    "metadata number": with_metadata(5),
    "metadata value number": with_metadata({"meta": 5}),
    "metadata value null": with_metadata({"meta": None}),
    "metadata value list": with_metadata({"meta": ["x"]}),
    "metadata value object": with_metadata({"meta": {"a": "b"}}),
    "metadata other value number": with_metadata({"other": 1.5}),
    "meta not json": with_metadata({"meta": "not json"}),
    "meta a list": with_metadata({"meta": "[1, 2]"}),
    "meta a string": with_metadata({"meta": '"x"'}),
    "meta lone surrogate": with_metadata({"meta": "\ud800"}),
    "metadata too large": with_metadata({"meta": json.dumps({"pad": "x" * MAX_PAYLOAD_METADATA_BYTES})}),
    "metadata many keys": with_metadata({f"k{i}": "v" * 64 for i in range(400)}),
    # dtypes
    **{f"dtype {d}": one_tensor(dtype=d) for d in ("F8_E8M0", "F8_E4M3", "F8_E5M2", "U16", "U32", "U64",
                                                    "C64", "F4", "F64", "BOOL", "u8", "")},
    "dtype number": one_tensor(dtype=1),
    "dtype null": one_tensor(dtype=None),
    "dtype list": one_tensor(dtype=["U8"]),
    # shapes
    "shape not a list": one_tensor(shape=4),
    "shape negative": one_tensor(shape=[-4]),
    "shape bool": one_tensor(shape=[True]),
    "shape float": one_tensor(shape=[4.0]),
    "shape string": one_tensor(shape=["4"]),
    "shape nested": one_tensor(shape=[[4]]),
    "shape NaN": blob(b'{"t": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 4]}}', b"\x00" * 4),
    "shape Infinity": blob(b'{"t": {"dtype": "U8", "shape": [Infinity], "data_offsets": [0, 4]}}', b"\x00" * 4),
    "shape too many dims": one_tensor(shape=[1] * 9 + [4]),
    "shape 2**64": one_tensor(shape=[2**64]),
    "shape product overflows": one_tensor(shape=[2**62, 2**62, 0, 4]),
    "shape disagrees with data": one_tensor(shape=[5]),
    # offsets
    "offsets reversed": one_tensor(offsets=[4, 0]),
    "offsets out of range": one_tensor(offsets=[0, 40], shape=[40]),
    "offsets negative": one_tensor(offsets=[-4, 0]),
    "offsets one value": one_tensor(offsets=[4]),
    "offsets three values": one_tensor(offsets=[0, 2, 4]),
    "offsets floats": one_tensor(offsets=[0.0, 4.0]),
    "offsets not a list": one_tensor(offsets="0-4"),
    "offsets 2**64": one_tensor(offsets=[2**64, 2**64 + 4]),
    "offsets overlap": blob({"a": entry(offsets=(0, 4)), "b": entry(offsets=(2, 6))}, b"\x00" * 6),
    "offsets same span twice": blob({"a": entry(), "b": entry()}, b"\x00" * 4),
    "offsets leave a gap": blob({"a": entry(offsets=(0, 4)), "b": entry(offsets=(6, 10))}, b"\x00" * 10),
    "offsets skip the start": one_tensor(offsets=[2, 6], shape=[4]),
    # entries and names
    "entry not an object": blob({"t": [1, 2]}),
    "entry missing shape": blob({"t": {"dtype": "U8", "data_offsets": [0, 4]}}, b"\x00" * 4),
    "entry extra key": blob({"t": {**entry(), "extra": 1}}, b"\x00" * 4),
    "name empty": blob({"": entry()}, b"\x00" * 4),
    "name too long": blob({"x" * (MAX_TENSOR_NAME_CHARS + 1): entry()}, b"\x00" * 4),
    "name with space": blob({"a b": entry()}, b"\x00" * 4),
    "name with newline": blob({"a\nb": entry()}, b"\x00" * 4),
    "name unicode": blob({"wé": entry()}, b"\x00" * 4),
    "name lone surrogate": blob('{"\\ud800": ' + json.dumps(entry()) + "}", b"\x00" * 4),
    "too many tensors": blob({f"t{i}": entry(shape=(0,), offsets=(0, 0)) for i in range(MAX_PAYLOAD_TENSORS + 1)}),
    # not bytes at all
    "str": "{}",
    "none": None,
    "list": [1, 2, 3],
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_crafted_payload_is_refused_with_payload_error(name):
    data = CORPUS[name]
    for parse in (decode_tensors, read_metadata):
        with pytest.raises(PayloadError):
            parse(data, LIMIT)


def test_mutated_payloads_decode_or_raise_payload_error():
    rng = random.Random(1234)
    refused = 0
    for _ in range(400):
        data = bytearray(VALID)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            at = rng.randrange(len(data))
            if kind < 0.5:
                data[at] = rng.randrange(256)
            elif kind < 0.75:
                del data[at:at + rng.randint(1, 16)]
            else:
                data[at:at] = bytes(rng.choice(b'{}[]":,0123456789 \\') for _ in range(rng.randint(1, 8)))
        try:
            decode_tensors(bytes(data), LIMIT)
        except PayloadError:
            refused += 1
    assert refused > 200  # most random edits break the payload; none may escape as another error


def test_oversized_header_is_refused_without_allocating_it():
    header_len = 40 * 1024 * 1024
    data = struct.pack("<Q", header_len) + b"[[]," * (header_len // 4) + b"\x00" * 16
    tracemalloc.start()
    try:
        with pytest.raises(PayloadError, match="header length"):
            decode_tensors(data, LIMIT)
        with pytest.raises(PayloadError, match="header length"):
            read_metadata(data, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"refusing the header allocated {peak} bytes"


def test_header_under_the_cap_costs_bounded_memory():
    # The worst case the cap allows: an accepted-size header of many tiny JSON values.
    body = b"[" + b"[]," * ((MAX_PAYLOAD_HEADER_BYTES - 8) // 3) + b"[]]"
    data = struct.pack("<Q", len(body)) + body
    tracemalloc.start()
    try:
        with pytest.raises(PayloadError, match="JSON object"):
            decode_tensors(data, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 1024 * 1024, f"parsing a header under the cap allocated {peak} bytes"


def test_nan_values_and_brackets_in_strings_still_decode():
    tensors = {"w|scale": torch.tensor([float("nan"), float("inf")], dtype=torch.float16),
               "w|idx": torch.zeros(0, dtype=torch.uint8)}
    data = encode_tensors(tensors, {"note": "[[[[{{{{", "unit": {"kind": "full"}})
    decoded, meta = decode_tensors(data, LIMIT)
    assert meta == {"note": "[[[[{{{{", "unit": {"kind": "full"}}
    assert torch.isnan(decoded["w|scale"][0]) and decoded["w|idx"].numel() == 0


def test_largest_contribution_header_fits_the_limits():
    # 3 tensors per parameter with realistic names: the limits leave headroom over the 1b preset.
    names = [f"model.layers.{i // 9}.self_attn.q_proj_{i % 9}.weight|{field}"
             for i in range(MAX_PAYLOAD_TENSORS // 3) for field in ("idx", "codes", "scale")]
    tensors = {name: torch.zeros(3, dtype=torch.uint8) for name in names}
    data = encode_tensors(tensors, {"pad": "x" * (MAX_PAYLOAD_METADATA_BYTES // 2)})
    assert int.from_bytes(data[:8], "little") <= MAX_PAYLOAD_HEADER_BYTES
    decoded, meta = decode_tensors(data, LIMIT)
    assert len(decoded) == len(names) and len(meta["pad"]) == MAX_PAYLOAD_METADATA_BYTES // 2
