"""Contribution codecs compared at a ~200x wire budget: held-out loss after R rounds of K-miner
full-model DiLoCo (the product's rounds, bench/rounds.py: plain averaging, outer lr 1) and
bytes per contribution, every byte counted.

Research record (bench/README.md "Compression: what else was tried"): the low-rank codecs
win at 8 rounds (213x at +3.0-3.2%) but lose from round ~20 on (+8% at 32 rounds, where the
top-k codec is +1.3%), so the miners keep top-k. Codecs (prototypes, except topk-K):
  dense            fp32, no compression (the reference)
  topk-K           the current SparseLoCo codec (template/training/compression.py, top-K/4096),
                   sent as contribution bytes and scored by the validator; the others are
                   merged unscored (no wire format a validator reads)
  dct-K            the same budget but top-K in the 2-D DCT-II domain of each 64x64 tile (DeMo)
  lr-R-bB          PowerSGD-style rank-R factors of every 2-D tensor (one power step, Q warm-
                   started across rounds), B-bit factors with one fp16 scale per column; 1-D
                   tensors int8 + one fp16 scale
  lr-R-bB-sK       low rank as above + top-K/4096 sparse residual (current codec on E - PQ^T)
  ...-iN, ...-eX   N power iterations per round (wire unchanged); error-feedback decay X
  ...-m            mid-rise factor grid (all 2^B codes, no zero level) instead of mid-tread
  ...-fN           N least-squares refits of each column scale (default 3)
  ...-vN           rank N for matrices with a side >= 1024 (tiny: embedding, lm_head)
every codec runs with error feedback e <- beta e + delta (beta = --ef-beta).

    python -m bench.compression_variants --threads 1 --out bench/results/compression_variants.json
    python -m bench.compression_variants --diagnose --threads 1   # one-shot errors, no training
    python -m bench.compression_variants --smoke
"""
from __future__ import annotations

import argparse
import math
import zlib
import statistics

import torch

from bench.collective import Setting
from bench.common import add_compression_setting_args, page_store, print_table, write_json
from bench.rounds import EVAL_SEED, DenseCodec, RoundsSetting, miner_hotkey, run_rounds
from template.training import compression as C
from template.training.assignment import heldout_pages
from template.training.model import configure_torch_threads
from template.training.presets import PRESET_SETTINGS

Tensors = dict[str, torch.Tensor]


# ------------------------------------------------------------------ quantisers


def quant_cols(x: torch.Tensor, bits: int, midrise: bool = False, fit_iters: int = 3
               ) -> tuple[torch.Tensor, int]:
    """Symmetric mid-tread grid (codes -(2^(b-1)-1)..2^(b-1)-1, zero included) with one fp16
    scale per column, least-squares refit; returns (dequantised, bytes). midrise: all 2^b codes,
    levels (2c - (L-1)) / (L-1) as in the top-k codec (no zero level)."""
    if midrise:
        return quant_cols_midrise(x, bits)
    top = (1 << (bits - 1)) - 1
    s = x.abs().amax(dim=0).clamp(min=1e-30)
    for _ in range(fit_iters):
        q = torch.round((x / s).clamp(-1, 1) * top) / top
        num, den = (x * q).sum(0), (q * q).sum(0)
        s = torch.where(den > 0, num / den.clamp(min=1e-30), s).clamp(min=1e-30)
    s = s.to(torch.float16).to(torch.float32)
    q = torch.round((x / s.clamp(min=1e-30)).clamp(-1, 1) * top)
    return q * s / top, math.ceil(x.numel() * bits / 8) + 2 * x.shape[1]


def quant_cols_midrise(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, int]:
    top = (1 << bits) - 1

    def deq(s):
        c = torch.round(((x / s).clamp(-1, 1) + 1) * top / 2)
        return (2 * c - top) / top

    s = x.abs().amax(dim=0).clamp(min=1e-30)
    for _ in range(3):
        lev = deq(s)
        num, den = (x * lev).sum(0), (lev * lev).sum(0)
        s = torch.where(den > 0, num / den.clamp(min=1e-30), s).clamp(min=1e-30)
    s = s.to(torch.float16).to(torch.float32).clamp(min=1e-30)
    return deq(s) * s, math.ceil(x.numel() * bits / 8) + 2 * x.shape[1]


def quant_1d(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    out, nbytes = quant_cols(x.reshape(-1, 1), 8)
    return out.reshape(x.shape), nbytes


# ------------------------------------------------------------------ codecs


class Codec:
    name = "?"

    def encode(self, e: Tensors, state: dict) -> tuple[Tensors, int]:
        """Decoded (what the validator sees) and wire bytes, for error buffer e."""
        raise NotImplementedError


class Dense(Codec):
    name = "dense"

    def encode(self, e, state):
        return {n: t.clone() for n, t in e.items()}, sum(4 * t.numel() for t in e.values())


class TopK(Codec):
    def __init__(self, k: int, bits: int = 2):
        self.cfg = C.CompressionConfig(chunk=64, topk=k, bits=bits, ef_beta=1.0)
        self.name = f"topk-{k}"

    def encode(self, e, state):
        upd, _ = C.compress(e, None, self.cfg)
        return C.decompress(upd, C.shapes_of(e)), C.wire_bytes(upd)


def dct_matrix(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(torch.float32)


class DctTopK(Codec):
    """top-k of the 2-D DCT of each 64x64 tile (1-D tensors: raw top-k as today); same bytes."""

    def __init__(self, k: int, bits: int = 2):
        self.topk = TopK(k, bits)
        self.name = f"dct-{k}"
        self.d = dct_matrix(64)

    def _map(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        if x.ndim != 2 or x.shape[0] % 64 or x.shape[1] % 64:
            return x
        r, c = x.shape
        t = x.view(r // 64, 64, c // 64, 64).permute(0, 2, 1, 3)
        t = self.d.T @ t @ self.d if inverse else self.d @ t @ self.d.T
        return t.permute(0, 2, 1, 3).reshape(r, c).contiguous()

    def encode(self, e, state):
        coeffs = {n: self._map(t, False) for n, t in e.items()}
        dec, nbytes = self.topk.encode(coeffs, state)
        return {n: self._map(t, True) for n, t in dec.items()}, nbytes


class LowRank(Codec):
    """PowerSGD-style, one power step per round: P = E Q (Q from last round, random at first),
    orthonormalise P, quantise P; Q = E^T P_hat (P_hat^T P_hat)^-1, quantise Q; decode
    P_hat Q_hat^T. 1-D tensors int8. Optional sparse residual (current top-k codec)."""

    def __init__(self, rank: int, bits: int, sparse_k: int = 0, rank_of=None, svd: bool = False,
                 iters: int = 1, midrise: bool = False, fit_iters: int = 3):
        self.rank, self.bits, self.svd, self.iters = rank, bits, svd, iters
        self.fit_iters = fit_iters
        self.midrise = midrise
        self.rank_of = rank_of or (lambda name, shape: rank)
        self.sparse = TopK(sparse_k) if sparse_k else None
        self.name = (f"lr{'svd' if svd else ''}-{rank}-b{bits}"
                     + (f"-s{sparse_k}" if sparse_k else "") + (f"-i{iters}" if iters > 1 else ""))

    def encode(self, e, state):
        out, total = {}, 0
        for name, t in e.items():
            if t.ndim != 2:
                out[name], nb = quant_1d(t)
                total += nb
                continue
            r = min(self.rank_of(name, tuple(t.shape)), *t.shape)
            if self.svd:
                u, sv, vh = torch.linalg.svd(t, full_matrices=False)
                p = u[:, :r]
            else:
                q = state.get(name)
                if q is None or q.shape[1] != r:
                    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                    q = torch.randn(t.shape[1], r, generator=g)
                for _ in range(self.iters - 1):
                    p, _ = torch.linalg.qr(t @ q)
                    q = t.T @ p
                p, _ = torch.linalg.qr(t @ q)
            ph, nb_p = quant_cols(p, self.bits, self.midrise, self.fit_iters)
            gram = ph.T @ ph
            q = t.T @ ph @ torch.linalg.pinv(gram)
            qh, nb_q = quant_cols(q, self.bits, self.midrise, self.fit_iters)
            state[name] = q
            out[name] = ph @ qh.T
            total += nb_p + nb_q
        if self.sparse is not None:
            res = {n: e[n] - out[n] for n in e if e[n].ndim == 2}
            dec, nb = self.sparse.encode(res, state)
            for n, t in dec.items():
                out[n] = out[n] + t
            total += nb
        return out, total


def parse_codec(spec: str) -> Codec:
    """dense | topk-K | dct-K | lr[svd]-R-bB[-sK][-iN][-vV][-fN];
    any spec may end in -eBETA to override the error-feedback decay for that arm."""
    kind, *rest = spec.split("-")
    opts = {t[0]: t[1:] for t in rest[1:]}
    ef = float(opts["e"]) if "e" in opts else None
    if kind == "dense":
        codec = Dense()
    elif kind == "topk":
        codec = TopK(int(rest[0]))
    elif kind == "dct":
        codec = DctTopK(int(rest[0]))
    elif kind in ("lr", "lrsvd"):
        rank, vocab_rank = int(rest[0]), int(opts.get("v", rest[0]))
        codec = LowRank(rank, int(opts.get("b", 4)), int(opts.get("s", 0)),
                        rank_of=lambda name, shape: (vocab_rank if max(shape) >= 1024
                                                     else rank),
                        svd=kind == "lrsvd", iters=int(opts.get("i", 1)),
                        midrise="m" in opts, fit_iters=int(opts.get("f", 3)))
        if "f" in opts:
            codec.name += f"-f{opts['f']}"
        if "m" in opts:
            codec.name += "-m"
        if vocab_rank != rank:
            codec.name += f"-v{vocab_rank}"
    else:
        raise SystemExit(f"unknown codec {spec!r}")
    codec.ef_beta = ef
    if ef is not None:
        codec.name += f"-e{ef:g}"
    return codec


# ------------------------------------------------------------------ training loop


class WithErrorFeedback:
    """A prototype codec with error feedback e <- beta e + delta (as `compress` keeps it), in the
    form `bench.rounds.Miner` sends research codecs through."""

    def __init__(self, codec: Codec, beta: float):
        self.codec, self.beta, self.name = codec, beta, codec.name

    def send(self, delta: Tensors, memory: dict) -> tuple[Tensors, int]:
        residual = memory.get("residual")
        e = delta if residual is None else {n: self.beta * residual[n] + delta[n] for n in delta}
        sent, nbytes = self.codec.encode(e, memory.setdefault("codec", {}))
        memory["residual"] = {n: e[n] - sent[n] for n in e}
        return sent, nbytes


def run_codec(store, s: Setting, heldout: torch.Tensor, codec: Codec, ef_beta: float,
              dump: dict | None = None) -> dict:
    """The product's rounds (`bench.rounds.run_rounds`: full model, plain averaging, outer lr 1)
    with `codec`: `topk-K` is the product's codec (contribution bytes, scored by the validator);
    the dense reference and the prototypes are merged unscored. `dump`: round -> miner 0's
    pseudo-gradient of that round, filled in."""
    ef_beta = ef_beta if getattr(codec, "ef_beta", None) is None else codec.ef_beta
    product = type(codec) is TopK
    recipe = s.recipe()
    if product:
        recipe = recipe.model_copy(update={"compression": codec.cfg.model_copy(update={"ef_beta": ef_beta})})
    sender = None if product else DenseCodec() if isinstance(codec, Dense) else WithErrorFeedback(codec, ef_beta)

    def observe(hotkey: str, r: int, delta: Tensors) -> None:
        if dump is not None and hotkey == miner_hotkey(0) and r in dump:
            dump[r] = {n: t.clone() for n, t in delta.items()}

    setting = RoundsSetting(s.preset, s.vocab_size, recipe, s.miners, s.rounds, s.eval_pages, codec=sender,
                            model_seed=s.seed, label=codec.name, observe=observe)
    res = run_rounds(setting, store, heldout, log=lambda line: print(line, flush=True))
    return {"codec": codec.name, "wire_kb": statistics.mean(res.wire_bytes) / 1e3,
            "ratio": statistics.mean(res.dense_bytes) / statistics.mean(res.wire_bytes), "final": res.heldout[-1],
            "curve": res.heldout, "merged": res.merged, "seconds": res.seconds}


# ------------------------------------------------------------------ one-shot diagnostic


def diagnose(store, s: Setting, heldout, codecs: list[str], rounds=(1, 4)) -> list[dict]:
    """Pseudo-gradients of miner 0 in rounds 1 and 4 of a dense run; per codec, one-shot
    (no error feedback) relative error ||e - decoded|| / ||e|| and cosine, overall and for the
    biggest tensors."""
    dump = {r: None for r in rounds}
    s2 = Setting(**{**s.__dict__, "rounds": max(rounds)})
    run_codec(store, s2, heldout, Dense(), 0.0, dump)
    rows = []
    for r in rounds:
        e = dump[r]
        flat = torch.cat([t.reshape(-1) for t in e.values()])
        # energy of the top singular values, per tensor group
        for spec in codecs:
            codec = parse_codec(spec)
            dec, nbytes = codec.encode(e, {})
            d = torch.cat([dec[n].reshape(-1) for n in e])
            row = {"round": r, "codec": codec.name, "ratio": 4 * flat.numel() / nbytes,
                   "rel_err": float((flat - d).norm() / flat.norm()),
                   "cos": float(flat @ d / (flat.norm() * d.norm()).clamp(min=1e-30))}
            for n, short in (("lm_head.weight", "head"), ("model.embed_tokens.weight", "emb"),
                             ("model.layers.0.mlp.up_proj.weight", "up0"),
                             ("model.layers.1.self_attn.q_proj.weight", "q1")):
                row[f"err_{short}"] = float((e[n] - dec[n]).norm() / e[n].norm())
            rows.append(row)
        sv = {}
        for n in ("lm_head.weight", "model.embed_tokens.weight",
                  "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight"):
            sig = torch.linalg.svdvals(e[n]) ** 2
            sv[n] = [round(float(sig[:k].sum() / sig.sum()), 3) for k in (1, 2, 4, 8)]
        print(f"round {r}: energy in top-1/2/4/8 singular values: {sv}")
        norms = {n: round(float(t.norm()), 3) for n, t in e.items()}
        print(f"round {r}: tensor norms {norms}")
    print_table(rows, [("round", "round", "d"), ("codec", "codec", "s"),
                       ("ratio", "x smaller", ".0f"), ("rel_err", "rel err", ".3f"),
                       ("cos", "cosine", ".3f"), ("err_head", "err lm_head", ".3f"),
                       ("err_emb", "err embed", ".3f"), ("err_up0", "err up0", ".3f"),
                       ("err_q1", "err q1", ".3f")],
                title="one-shot (no error feedback), miner 0's dense-run pseudo-gradient")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_compression_setting_args(p, rounds=8)
    p.add_argument("--ef-beta", type=float, default=0.95)
    p.add_argument("--codecs", default="dense,topk-32,lr-2-b4,lr-3-b4")
    p.add_argument("--diagnose", action="store_true")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        a.seq, a.batch, a.steps, a.rounds, a.miners, a.eval_pages = 32, 2, 2, 2, 2, 8
        a.codecs = "dense,topk-32,dct-32,lr-2-b4,lr-1-b4-s8-i2-e0.9,lr-4-b3-i3-v5"
    configure_torch_threads(a.threads)
    vocab = PRESET_SETTINGS[a.preset].vocab_size
    store = page_store(vocab, a.seq)
    heldout = store.pages(heldout_pages(EVAL_SEED, store.heldout_ids, a.eval_pages))
    s = Setting(a.preset, vocab, a.seq, a.batch, a.steps, a.rounds, a.miners, a.lr, 2,
                a.eval_pages, None, 1)
    specs = [c.strip() for c in a.codecs.split(",") if c.strip()]
    print(f"compression variants: preset={a.preset} K={a.miners} R={a.rounds} H={a.steps} "
          f"batch={a.batch}x{a.seq} lr={a.lr} ef_beta={a.ef_beta} threads={a.threads}",
          flush=True)
    if a.diagnose:
        rows = diagnose(store, s, heldout, specs, rounds=(1, 2) if a.smoke else (1, 4))
        write_json(a.out, {"setting": vars(a) | {"out": str(a.out)}, "diagnose": rows})
        return rows
    rows = [run_codec(store, s, heldout, parse_codec(c), a.ef_beta) for c in specs]
    dense_final = next((r["final"] for r in rows if r["codec"] == "dense"), None)
    for r in rows:
        if dense_final:
            r["vs_dense"] = r["final"] / dense_final - 1
    print_table(rows, [("codec", "codec", "s"), ("wire_kb", "wire kB", ",.2f"),
                       ("ratio", "x smaller", ".0f"), ("final", "final loss", ".4f"),
                       ("vs_dense", "vs dense", "+.2%"), ("seconds", "seconds", ".0f")],
                title=f"per contribution; held-out after {a.rounds} rounds "
                      f"(initial {rows[0]['curve'][0]:.4f}), EF beta {a.ef_beta}")
    write_json(a.out, {"setting": vars(a) | {"out": str(a.out)}, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
