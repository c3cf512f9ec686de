"""Compression: round trip, exact top-k, error feedback, validation of wire tensors."""
import pytest
import torch

from template.training.compression import (
    CompressedUpdate, CompressionConfig, MalformedUpdate, compress, decompress, dense_bytes,
    pack_bits, shapes_of, unpack_bits, wire_bytes,
)

CFG = CompressionConfig(chunk=64, topk=32, bits=2, ef_beta=0.95)


def _delta(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(130, 70, generator=g), "norm": torch.randn(128, generator=g),
            "tiny": torch.randn(5, generator=g), "sq": torch.randn(64, 64, generator=g)}


def _wire(delta, cfg=CFG):
    update, residual = compress(delta, None, cfg)
    return update, residual, update.to_tensors()


def test_round_trip_through_wire_tensors_is_exact():
    delta = _delta()
    update, residual, tensors = _wire(delta)
    parsed = CompressedUpdate.from_tensors(tensors, shapes_of(delta), CFG)
    dense = decompress(parsed, shapes_of(delta))
    for name, d in delta.items():
        assert dense[name].dtype == torch.float32 and dense[name].shape == d.shape
        assert torch.equal(dense[name], decompress(update, shapes_of(delta))[name])
        # what was sent plus what stays behind is exactly the input (no error feedback yet)
        torch.testing.assert_close(dense[name] + residual[name], d, rtol=0, atol=1e-6)


def test_topk_selects_exactly_the_largest_magnitudes_per_chunk():
    x = torch.zeros(64, 64)
    x.view(-1)[torch.arange(0, 4096, 7)] = torch.linspace(-3, 3, len(range(0, 4096, 7)))
    dense = decompress(compress({"x": x}, None, CFG)[0], {"x": (64, 64)})["x"]
    chosen = set(torch.nonzero(dense.view(-1)).view(-1).tolist())
    expected = set(x.view(-1).abs().topk(32).indices.tolist())
    assert chosen == expected
    assert torch.equal(torch.sign(dense.view(-1)[list(chosen)]), torch.sign(x.view(-1)[list(chosen)]))


def test_each_tile_keeps_topk_and_edge_chunks_never_select_padding():
    delta = {"w": torch.randn(130, 70)}
    dense = decompress(compress(delta, None, CFG)[0], {"w": (130, 70)})["w"]
    # tiles: rows [0,64),[64,128),[128,130) x cols [0,64),[64,70)
    assert (dense[:64, :64] != 0).sum() == 32
    assert (dense[:64, 64:] != 0).sum() == 32  # 384 real slots, still 32
    assert (dense[128:, 64:] != 0).sum() == 12  # only 12 real slots in the corner tile


def test_error_feedback_keeps_what_was_not_sent():
    delta = _delta(1)
    update, residual = compress(delta, None, CFG)
    sent = decompress(update, shapes_of(delta))
    for name in delta:
        torch.testing.assert_close(residual[name], delta[name] - sent[name], rtol=0, atol=0)
    update2, residual2 = compress(delta, residual, CFG)
    sent2 = decompress(update2, shapes_of(delta))
    for name in delta:
        expected = CFG.ef_beta * residual[name] + delta[name] - sent2[name]
        torch.testing.assert_close(residual2[name], expected, rtol=0, atol=1e-6)


def test_repeated_sends_converge_to_the_dense_signal():
    delta = {"w": torch.randn(64, 64)}
    cfg = CompressionConfig(topk=256, ef_beta=1.0)
    residual, total = None, torch.zeros(64, 64)
    for _ in range(200):
        update, residual = compress(delta if residual is None else {"w": torch.zeros(64, 64)},
                                    residual, cfg)
        total += decompress(update, {"w": (64, 64)})["w"]
    assert (total - delta["w"]).norm() < 0.05 * delta["w"].norm()


def test_zero_delta_gives_a_valid_update_that_decodes_to_zero():
    delta = {name: torch.zeros_like(t) for name, t in _delta().items()}
    update, residual, tensors = _wire(delta)
    dense = decompress(CompressedUpdate.from_tensors(tensors, shapes_of(delta), CFG),
                       shapes_of(delta))
    assert all(torch.count_nonzero(t) == 0 for t in dense.values())
    assert all(torch.count_nonzero(t) == 0 for t in residual.values())


def test_decoding_is_deterministic():
    delta = _delta(2)
    tensors = compress(delta, None, CFG)[0].to_tensors()
    a = decompress(CompressedUpdate.from_tensors(tensors, shapes_of(delta), CFG), shapes_of(delta))
    b = decompress(CompressedUpdate.from_tensors({k: v.clone() for k, v in tensors.items()},
                                                 shapes_of(delta), CFG), shapes_of(delta))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_compression_ratio_is_at_least_200x_for_top32_2bit():
    shapes = {"a": (768, 768), "b": (2048, 768), "c": (768, 2048)}
    delta = {n: torch.randn(s) for n, s in shapes.items()}
    update = compress(delta, None, CFG)[0]
    ratio = dense_bytes(shapes) / wire_bytes(update)
    assert ratio >= 200, ratio


def test_bit_packing_round_trips():
    values = torch.randint(0, 4096, (77,))
    assert torch.equal(unpack_bits(pack_bits(values, 12), 12, 77), values)


# ---------------------------------------------------------------- malformed inputs


def _reject(tensors, match, shapes=None):
    shapes = shapes or shapes_of(_delta())
    with pytest.raises(MalformedUpdate, match=match) as info:
        CompressedUpdate.from_tensors(tensors, shapes, CFG)
    assert info.value.reason


@pytest.fixture
def good() -> dict[str, torch.Tensor]:
    return _wire(_delta())[2]


def test_unknown_parameter_is_rejected(good):
    good["evil|idx"] = good["w|idx"]
    _reject(good, "unknown parameter 'evil'")


def test_unexpected_field_is_rejected(good):
    good["w|values"] = torch.zeros(3)
    _reject(good, "unexpected tensor name")


def test_missing_parameter_is_rejected(good):
    for f in ("idx", "codes", "scale"):
        del good[f"w|{f}"]
    _reject(good, "missing parameters")


def test_missing_field_is_rejected(good):
    del good["w|codes"]
    _reject(good, r"w: missing fields \['codes'\]")


def test_wrong_size_is_rejected(good):
    good["w|idx"] = torch.cat([good["w|idx"], torch.zeros(3, dtype=torch.uint8)])
    _reject(good, r"w\|idx: shape")


def test_wrong_dtype_is_rejected(good):
    good["w|scale"] = good["w|scale"].float()
    _reject(good, r"w\|scale: dtype")


def test_non_finite_scale_is_rejected(good):
    good["w|scale"][0] = float("nan")
    _reject(good, "finite")


def test_negative_scale_is_rejected(good):
    good["w|scale"][0] = -1.0
    _reject(good, "finite and >= 0")


def test_duplicate_indices_are_rejected(good):
    idx = unpack_bits(good["sq|idx"], 12, 32)
    idx[1] = idx[0]
    good["sq|idx"] = pack_bits(idx, 12)
    _reject(good, "strictly ascending")


def test_index_into_padding_is_rejected(good):
    k = 32 + 32 + 32 + 32 + 32 + 12  # chunk sizes of the (130, 70) tensor, see above
    idx = unpack_bits(good["w|idx"], 12, k)
    idx[-1] = 4095  # corner tile holds only rows 0-1, cols 0-5
    good["w|idx"] = pack_bits(idx, 12)
    _reject(good, "padding")


def test_non_zero_padding_bits_are_rejected(good):
    codes = good["tiny|codes"].clone()  # 5 values x 2 bits: 6 trailing bits must be zero
    codes[-1] |= 0x80
    good["tiny|codes"] = codes
    _reject(good, "padding bits")


def test_non_tensor_is_rejected(good):
    good["w|idx"] = [1, 2, 3]
    _reject(good, "not a tensor")
