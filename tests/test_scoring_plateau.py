"""The held-out and assignment checks together (docs/scoring.md, "Why checks 7 and 8 work
together this way"), on scripted per-page gains so each z is known exactly.

Late in training an honest update moves the held-out loss by less than the noise of the held-out
pages while its own pages clearly gain; it must be accepted there. An update without significant
held-out gain and only weak evidence of work must not, and one that measurably hurts held-out
loss must not whatever its evidence."""

import math

import torch

from template.validation.scoring import Contribution, ScoringConfig, score_round

N = 64  # pages per token set
BLOCK = 100  # each contribution's update lives on its own block of one tensor
PATTERN = torch.tensor([1.0, -1.0] * (N // 2), dtype=torch.float64)  # sample sd = sqrt(N / (N-1))
HELDOUT, CONTROL = object(), object()


def gains(z: float) -> torch.Tensor:
    """Per-page gains (sd 0.01) whose paired z is exactly `z`."""
    sd = 0.01 * math.sqrt(N / (N - 1))
    return z * sd / math.sqrt(N) + 0.01 * PATTERN


class ScriptedRound:
    """loss_fn for score_round: base losses are 5.0; an update's gain on each token set is scripted
    per contributor (found from the block its update occupies)."""

    def __init__(self, script: dict[str, tuple[float, float]]):
        self.names = list(script)
        self.script = script  # name -> (held-out z, assignment z)
        self.assigned = {name: object() for name in script}

    def delta(self, name: str) -> dict[str, torch.Tensor]:
        d = torch.zeros(BLOCK * len(self.names))
        i = self.names.index(name)
        d[i * BLOCK:(i + 1) * BLOCK] = 1.0
        return {"w": d}

    def loss_fn(self, delta, scale, tokens):
        base = torch.full((N,), 5.0, dtype=torch.float64)
        if delta is None:
            return base
        name = self.names[int(delta["w"].abs().argmax()) // BLOCK]
        held_z, assignment_z = self.script[name]
        if tokens is HELDOUT:
            return base - gains(held_z)
        if tokens is CONTROL:
            return base  # control pages: no gain
        # assigned pages: Welch z of assigned minus control (control gain has zero variance)
        return base - gains(assignment_z)

    def score(self, cfg: ScoringConfig | None = None):
        contributions = [Contribution(name, uid, self.delta(name), uid, assigned_tokens=self.assigned[name],
                                      control_tokens=CONTROL) for uid, name in enumerate(self.names)]
        return score_round(contributions, self.loss_fn, cfg, heldout_tokens=HELDOUT,
                           expected_shapes={"w": (BLOCK * len(self.names),)})


def test_an_update_without_significant_held_out_gain_is_accepted_on_strong_evidence_of_work():
    # "unluckier": at -3.5 an update with no effect at all lands once in 4,300 tests (harm_z is 4)
    reports = ScriptedRound({"plateau": (0.5, 25.0), "unlucky": (-2.5, 25.0), "unluckier": (-3.5, 25.0)}).score()
    for name in ("plateau", "unlucky", "unluckier"):
        r = reports[name]
        assert r.accepted, r.reason
        assert "neutral" in r.check("heldout_gain").reason
    assert reports["plateau"].score == reports["plateau"].heldout.mean > 0
    assert reports["unlucky"].score == 0.0  # a negative mean pays nothing


def test_without_significant_held_out_gain_weak_evidence_of_work_is_refused():
    r = ScriptedRound({"weak": (0.5, 2.0)}).score()["weak"]
    assert not r.accepted and r.score == 0.0
    assert r.reason.startswith("assigned_vs_random:") and "z 2 < 3" in r.reason
    assert "held-out gain not significant" in r.reason


def test_with_significant_held_out_gain_the_lower_assignment_bar_holds():
    reports = ScriptedRound({"early": (8.0, 2.0), "idle": (8.0, 0.5)}).score()
    assert reports["early"].accepted and reports["early"].score == reports["early"].heldout.mean
    # no second sample here: the first decides at assignment_z_min
    assert reports["idle"].reason.startswith("assigned_vs_random:") and "z 0.5 < 1.2 on 64 pages" in reports["idle"].reason


def test_an_update_that_measurably_hurts_held_out_loss_is_refused_whatever_its_evidence():
    # z -12: the loss rises by 0.015 nats, 0.3% of the base loss of 5 (the harm margin is 0.1%)
    r = ScriptedRound({"poison": (-12.0, 40.0)}).score()["poison"]
    assert not r.accepted and r.score == 0.0
    assert r.reason.startswith("heldout_gain:") and "hurts" in r.reason
    assert r.check("assigned_vs_random").passed is None


def test_a_harm_measured_precisely_but_too_small_to_matter_is_not_refused():
    """Late in training an honest update moves held-out loss a little either way, and 64 pages can
    measure that at z -4.4: a rise of 0.0055 nats is 0.11% of the loss, at the margin z -0.4."""
    r = ScriptedRound({"overfit": (-4.4, 30.0)}).score()["overfit"]
    assert r.accepted, r.reason
    assert r.score == 0.0  # a negative mean pays nothing
    harmful = ScriptedRound({"harmful": (-4.4, 30.0)}).score(ScoringConfig(harm_margin=0.0))["harmful"]
    assert harmful.reason.startswith("heldout_gain:")  # without the margin: refused


def test_the_old_single_bar_is_one_setting_away():
    """neutral_assignment_z_min = inf restores "held-out gain must be significant"."""
    cfg = ScoringConfig(neutral_assignment_z_min=math.inf)
    assert not ScriptedRound({"plateau": (0.5, 25.0)}).score(cfg)["plateau"].accepted


def test_an_update_whose_held_out_losses_overflow_is_refused():
    """One page's loss +inf: the gain's mean is -inf and its spread NaN, which no z measures."""
    class Overflowing(ScriptedRound):
        def loss_fn(self, delta, scale, tokens):
            out = super().loss_fn(delta, scale, tokens)
            if delta is not None and tokens is HELDOUT:
                out = out.clone()
                out[0] = math.inf
            return out

    r = Overflowing({"overflow": (8.0, 40.0)}).score()["overflow"]
    assert not r.accepted and r.reason.startswith("heldout_gain:") and "not finite" in r.reason
