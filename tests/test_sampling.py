"""CodeSampler draws from transformers' distribution (guidance, temperature, top-k, top-p), and the
prefill skips only logits that generate() never reads."""

from __future__ import annotations

import torch
from transformers.generation.logits_process import ClassifierFreeGuidanceLogitsProcessor

from musicsweep.engine.longform import last_position_logits
from musicsweep.engine.sampling import CodeSampler
from musicsweep.engine.tiny import build_tiny_model
from musicsweep.job import GenerationParams

DRAWS = 40_000


def frequencies(sampler: CodeSampler, logits: torch.Tensor) -> torch.Tensor:
    uniform = torch.rand((DRAWS, 1), generator=torch.Generator().manual_seed(0))
    picks = sampler.sample(logits.expand(DRAWS, -1).clone(), uniform)
    return torch.bincount(picks.flatten(), minlength=logits.shape[-1]).float() / DRAWS


def test_top_k_draws_follow_the_softmax_of_the_k_best_codes():
    logits = torch.tensor([[2.0, 0.5, 1.0, -1.0, 1.5, 0.0]])
    sampler = CodeSampler(GenerationParams(top_k=3, temperature=0.7))
    expected = torch.zeros(6)
    best = torch.tensor([0, 4, 2])
    expected[best] = torch.softmax(logits[0, best] / 0.7, dim=-1)
    observed = frequencies(sampler, logits)
    assert observed[[1, 3, 5]].sum() == 0
    assert torch.max(torch.abs(observed - expected)) < 0.01


def test_top_p_keeps_the_smallest_head_reaching_p():
    probs = torch.tensor([0.5, 0.05, 0.3, 0.1, 0.05])
    sampler = CodeSampler(GenerationParams(top_k=0, top_p=0.75))
    observed = frequencies(sampler, probs.log()[None])
    # 0.5 + 0.3 reaches 0.75: only codes 0 and 2 remain, renormalised
    assert observed[[1, 3, 4]].sum() == 0
    assert abs(observed[0] - 0.5 / 0.8) < 0.01 and abs(observed[2] - 0.3 / 0.8) < 0.01


def test_no_top_k_samples_the_whole_vocabulary():
    logits = torch.zeros(1, 4)
    observed = frequencies(CodeSampler(GenerationParams(top_k=0)), logits)
    assert torch.max(torch.abs(observed - 0.25)) < 0.01


def test_guidance_is_applied_once_whether_or_not_musicgen_guides_after_us():
    conditional = torch.tensor([[0.0, 1.0, 0.9]])
    unconditional = torch.tensor([[0.0, 1.0, 0.0]])
    sampler = CodeSampler(GenerationParams(guidance_scale=3.0, top_k=1), draws=torch.zeros(2, 1, 1))
    input_ids = torch.zeros(1, 5, dtype=torch.long)
    # guided = uncond + 3 * (cond - uncond) = [0, 1, 2.7]: code 2, though the conditional alone picks 1
    scores = sampler(input_ids, torch.cat([conditional, unconditional]))
    assert scores.shape == (2, 3) and scores.argmax(dim=-1).tolist() == [2, 2]
    after_musicgen = ClassifierFreeGuidanceLogitsProcessor(3.0)(input_ids, scores)
    assert torch.isfinite(after_musicgen).all() and after_musicgen.argmax(dim=-1).tolist() == [2]
    already_guided = unconditional + (conditional - unconditional) * 3.0
    assert sampler(input_ids, already_guided).argmax(dim=-1).tolist() == [2]


def test_as_a_logits_processor_it_takes_its_windows_draws_step_by_step():
    logits = torch.randn(8, 2048, generator=torch.Generator().manual_seed(1))
    draws = torch.rand((3, 8, 1), generator=torch.Generator().manual_seed(5))
    sampler = CodeSampler(GenerationParams(), draws)
    input_ids = torch.zeros(8, 1, dtype=torch.long)
    for step in range(3):
        picked = sampler(input_ids, logits).argmax(dim=-1, keepdim=True)
        assert torch.equal(picked, sampler.sample(logits, draws[step]))
    assert sampler.step == 3


def test_prefill_projects_only_the_last_position_and_it_is_unchanged():
    model, tokenizer = build_tiny_model()
    inputs = tokenizer(text=["a prompt"], return_tensors="pt")
    prompt = torch.randint(0, 2048, (4, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(**inputs, decoder_input_ids=prompt).logits
        with last_position_logits(model):
            last = model(**inputs, decoder_input_ids=prompt).logits
        after = model(**inputs, decoder_input_ids=prompt).logits
    assert full.shape == (4, 20, 2048) and last.shape == (4, 1, 2048)
    torch.testing.assert_close(last[:, 0], full[:, -1])
    assert after.shape == full.shape  # the hooks are gone afterwards


def test_a_draw_at_the_very_top_of_the_distribution_never_picks_an_excluded_code():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    sampler = CodeSampler(GenerationParams(top_k=0, top_p=0.8))  # keeps codes 0 and 1
    # float rounding can make a draw times the total equal the total: the largest possible draw
    assert sampler.sample(probs.log(), torch.ones(1, 1)).tolist() == [[1]]
