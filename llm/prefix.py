"""Batched next-token probabilities with a shared prompt prefix computed once.

Persona prompts of one survey share a long opening (chat-template header, system message, the
start of the persona template); prompts of one persona across items share the whole persona.
:func:`plan_batches` sorts the tokenised prompts into batches of similar length (or, when that is
cheaper, of the longest shared openings) and gives each batch the length of its longest common
token prefix. :func:`next_token_probs` runs that prefix once with batch size one, expands its
key/value cache over the batch and feeds only each prompt's remaining tokens, left-padded between
prefix and suffix, with explicit position ids and an attention mask that hides the padding. The
result equals a plain padded forward pass up to floating-point rounding (~1e-6 in fp32).

Examples
--------
>>> common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
2
>>> plan_batches([[1, 2, 3, 4], [1, 2, 5], [9]], batch_size=2, min_prefix=1)
[([0, 1], 2), ([2], 0)]
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

__all__ = ["common_prefix_length", "plan_batches", "batch_cost", "next_token_probs"]


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token sequences (0 for none or an empty list).

    Examples
    --------
    >>> common_prefix_length([[5, 6, 7], [5, 6, 7]])
    3
    >>> common_prefix_length([[5, 6], [7]])
    0
    """
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


def _batch_prefix(seqs: Sequence[Sequence[int]], min_prefix: int) -> int:
    """Prefix length worth reusing for one batch: every prompt keeps at least one own token."""
    if len(seqs) < 2:
        return 0
    p = min(common_prefix_length(seqs), min(len(s) for s in seqs) - 1)
    return p if p >= min_prefix else 0


def batch_cost(seqs: Sequence[Sequence[int]], batches: Sequence[tuple[Sequence[int], int]]) -> int:
    """Token positions a plan computes: per batch, size x (longest prompt - prefix) + prefix.

    Examples
    --------
    >>> batch_cost([[1, 2, 3], [1, 2, 4, 5]], [([0, 1], 2)])   # 2 x (4 - 2) + 2
    6
    >>> batch_cost([[1, 2, 3], [1, 2, 4, 5]], [([0, 1], 0)])   # plain padding: 2 x 4
    8
    """
    total = 0
    for idx, p in batches:
        total += len(idx) * (max(len(seqs[i]) for i in idx) - p) + p
    return total


def plan_batches(
    seqs: Sequence[Sequence[int]], batch_size: int, reuse_prefix: bool = True, min_prefix: int = 8
) -> list[tuple[list[int], int]]:
    """Split prompts into batches: ``[(indices, prefix_length), ...]``.

    Two orders are tried, by length (little padding) and lexicographic by tokens (long shared
    prefixes, e.g. one persona asked several items); each is cut into chunks of ``batch_size``
    and the order whose plan computes fewer token positions (:func:`batch_cost`) wins, the
    length order on ties. Without ``reuse_prefix`` every prefix length is 0 and the length order
    is used.

    Parameters
    ----------
    seqs : sequence of sequence of int
        Token ids of each prompt (no padding).
    batch_size : int
        Largest batch.
    reuse_prefix : bool
        Compute each batch's common prefix once.
    min_prefix : int
        Shorter common prefixes are not worth a separate pass: treated as 0.

    Returns
    -------
    list of (list of int, int)

    Examples
    --------
    >>> seqs = [[1, 2, 3, 7], [1, 2, 3, 8, 8], [4, 5, 6, 7], [4, 5, 6, 8, 8]]
    >>> plan_batches(seqs, 2, min_prefix=1)   # same-opening prompts batched together
    [([0, 1], 3), ([2, 3], 3)]
    >>> plan_batches(seqs, 2, reuse_prefix=False)   # same-length prompts batched together
    [([0, 2], 0), ([1, 3], 0)]
    """
    n = len(seqs)
    by_length = sorted(range(n), key=lambda i: (len(seqs[i]), tuple(seqs[i])))

    def chunks(order: list[int]) -> list[tuple[list[int], int]]:
        out = []
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            p = _batch_prefix([seqs[i] for i in idx], min_prefix) if reuse_prefix else 0
            out.append((idx, p))
        return out

    plan = chunks(by_length)
    if reuse_prefix:
        lexical = chunks(sorted(range(n), key=lambda i: tuple(seqs[i])))
        if batch_cost(seqs, lexical) < batch_cost(seqs, plan):
            plan = lexical
    return plan


def _cache_kwarg(model: Any) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _prefix_kv(model: Any, prefix: Sequence[int], store: dict | None) -> list:
    """Per-layer (key, value) tensors of ``prefix`` (batch 1), reused from ``store`` when equal."""
    import torch

    key = tuple(prefix)
    if store is not None and store.get("ids") == key:
        return store["kv"]
    ids = torch.tensor([list(prefix)], device=model.device)
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache = out.cache if _cache_kwarg(model) == "cache" else out.past_key_values
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    if store is not None:
        store.clear()
        store.update(ids=key, kv=kv)
    return kv


def next_token_probs(
    model: Any,
    seqs: Sequence[Sequence[int]],
    label_ids: Sequence[int],
    pad_id: int,
    prefix_len: int = 0,
    store: dict | None = None,
) -> np.ndarray:
    """Next-token probabilities of ``label_ids`` after each prompt, in one batched pass.

    Parameters
    ----------
    model : transformers causal LM
        In eval mode; called under ``torch.inference_mode``.
    seqs : sequence of sequence of int
        Token ids of each prompt; the first ``prefix_len`` ids must be the same in all.
    label_ids : sequence of int
        Vocabulary ids whose probabilities are returned (softmax over the whole vocabulary).
    pad_id : int
        Token id used for padding (masked out).
    prefix_len : int
        Length of the shared prefix to compute once (0: plain left-padded pass).
    store : dict, optional
        Holds the last prefix's key/value cache so consecutive batches with the same prefix
        reuse it.

    Returns
    -------
    numpy.ndarray
        Shape (len(seqs), len(label_ids)), float64.

    Examples
    --------
    A tiny random Llama: the prefix pass gives the plain pass's probabilities.

    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> lm = LlamaForCausalLM(cfg).eval()
    >>> seqs = [[1, 2, 3, 4], [1, 2, 3, 5, 6]]
    >>> plain = next_token_probs(lm, seqs, [7, 8], pad_id=0)
    >>> reused = next_token_probs(lm, seqs, [7, 8], pad_id=0, prefix_len=3)
    >>> bool(np.abs(plain - reused).max() < 1e-6)
    True
    """
    import torch

    P = int(prefix_len)
    suffixes = [list(s[P:]) for s in seqs]
    B, L = len(suffixes), max(len(s) for s in suffixes)
    device = model.device
    ids = torch.full((B, L), int(pad_id), dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for r, s in enumerate(suffixes):
        ids[r, L - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[r, L - len(s) :] = 1
    pos = P + (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = {"logits_to_keep": 1}
    with torch.inference_mode():
        if P > 0:
            from transformers import DynamicCache

            kv = _prefix_kv(model, seqs[0][:P], store)
            data = [(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in kv]
            kwargs[_cache_kwarg(model)] = DynamicCache(ddp_cache_data=data, config=model.config)
            kwargs["use_cache"] = True
            mask = torch.cat([torch.ones((B, P), dtype=torch.long), mask], dim=1)
        else:
            kwargs["use_cache"] = False
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device), **kwargs)
        probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1)[:, list(label_ids)]
    return probs.cpu().numpy().astype(float)
