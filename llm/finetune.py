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

This module is the classifier alone; it runs past 600 lines because the class documents its ~30
settings in one numpydoc block. Its settings checks live in :mod:`rectify.llm.finetune_settings`,
training in :mod:`rectify.llm.finetune_train`, saving and loading in :mod:`rectify.llm.finetune_io`.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from rectify._checks import refuse_special_tokens
from rectify.errors import ConfigError, InputError
from rectify.llm.base import progress
from rectify.llm.finetune_settings import _callable_path, _check_params, _encode, _item_specs
from rectify.llm.finetune_train import (_BOTTOM_MEMO, _memo_put, _Rows, _torch_threads,  # noqa: F401 - re-exported
                                        clear_activation_memo, train)
from rectify.llm.lora_backbone import (EMBEDDED, auto_dtype, auto_target_modules, build_net,
                                       decoder_stack, head_state, load_backbone, n_layers)

__all__ = ["LoRAClassifier", "load_backbone", "auto_target_modules"]

_PREAMBLE = "You are a person with these characteristics: "  # rectify.llm.persona's default


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
        (:func:`rectify.llm.persona.render_persona`). Default: the covariates only, without the
        prompting family's preamble (``"age 34; gender woman."``): a preamble that is the same for
        everyone carries nothing to learn from and costs a third of the tokens.
    render : callable, optional
        ``row -> str`` replacing the persona renderer entirely.
    r, alpha, dropout : LoRA rank, scaling numerator and dropout (defaults 8, 16, 0.05).
    target_modules : list of str, optional
        Modules to adapt; default: the q/v attention projections (:func:`auto_target_modules`).
    lora_layers : int or None, default 2
        Adapt only the top ``lora_layers`` transformer layers (None: all). The frozen layers below
        them do not change during training: with ``cache_activations`` their output is computed
        once per persona and reused in every epoch, and backpropagation stops at the lowest adapted
        layer, so an epoch costs about ``lora_layers / n_layers`` of a full pass.
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
    class_weight : None, "balanced" or dict, default None
        None: every answer weighs the same, so the probabilities estimate the answer shares (what
        PPI, shares and log-loss need). ``"balanced"`` weights the loss by
        ``n / (K_seen * count_k)`` per item, so rare options count more -- it pulls the
        probabilities towards uniform (misinformation survey, one 75-row pilot x 4 items, 400
        held-out rows: log-loss 1.376 balanced against 1.321 unweighted, other settings equal); a dict
        gives ``{option: weight}`` (one item; other options weigh 1).
    pooling : {"mean", "last"}
    head_hidden : int, default 64
        Width of the shared hidden layer of the head.
    head_dropout : float, default 0.1
    device : str, optional
        ``"cuda"`` when available, else ``"cpu"``.
    dtype : {"auto", "float32", "bfloat16", "float16"}, default "auto"
        Backbone dtype. ``"auto"``: bf16 where the hardware computes it natively (a CPU with the
        ``amx_bf16`` or ``avx512_bf16`` flag, where it is ~3x faster than fp32; a CUDA device that
        supports it), else fp32 (on a CPU without those flags bf16 is emulated and several times
        *slower*). An explicit dtype wins. Adapters and head are trained in fp32.
    max_rows : int, optional
        Train on at most this many pilot rows: a larger pilot is subsampled at random (seeded by
        ``random_state``); the rows used are in ``rows_used_``. Default: all rows.
    cache_activations : bool, default True
        Compute the frozen bottom layers once per persona (see ``lora_layers``). False runs the
        whole backbone at every step (same result up to rounding, slower); backbones that are not
        Llama-like decoders always run whole.
    num_threads : int, optional
        Torch CPU threads during ``fit`` and ``predict_proba`` (restored afterwards); default:
        torch's setting, which is the number of cores.
    progress : bool, default False
        Show progress bars (frozen-layer pass, training steps with epoch and loss, prediction).
    random_state : int, default 0
        Seeds the split, the shuffling, the initialisation and dropout (the global torch RNG is
        restored afterwards). Loading the backbone -- including the first conversion of the
        embedded model, which initialises a model at random -- runs on a forked RNG, so a seed gives
        the same model on a cold and a warm model cache. On CPU with the same thread count, a
        rerun, in this process or another, gives the same model.

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
    dtype_ : str
        The backbone dtype used (``"auto"`` resolved).
    n_cached_layers_ : int
        Frozen bottom layers computed once per persona (0 when the backbone runs whole).
    rows_used_ : ndarray of int
        Positions of the pilot rows trained on (all, unless ``max_rows`` subsampled).
    fit_seconds_ : float

    Notes
    -----
    One convention across the simulator, fine-tuning and Bayesian classes: ``predict_proba`` is an
    ``(n, K)`` array over ``classes_`` (a list of them for a battery), ``predict`` the most likely
    option (scikit-learn's convention), :meth:`predict_score` the expected option score.

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
                 lora_layers: int | None = 2,
                 lr: float = 5e-4, epochs: int = 3, batch_size: int = 16, max_length: int = 256,
                 val_fraction: float = 0.15, patience: int = 1,
                 class_weight: str | None = None, pooling: str = "mean",
                 head_hidden: int = 64, head_dropout: float = 0.1, device: str | None = None,
                 dtype: str | None = "auto", max_rows: int | None = None,
                 cache_activations: bool = True, num_threads: int | None = None,
                 progress: bool = False, random_state: int = 0):
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
        self.max_rows = max_rows
        self.cache_activations = cache_activations
        self.num_threads = num_threads
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ checks and inputs
    def _check_params(self) -> None:
        _check_params(self)

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
                if self.template is None:  # the covariates only: the preamble is the same for all
                    out = [t[len(_PREAMBLE):] if t.startswith(_PREAMBLE) else t for t in out]
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

    def _load_encoder(self) -> tuple[Any, Any, str]:
        """Backbone and tokenizer in the resolved dtype, loaded on a forked RNG: converting the
        embedded model on a cold cache initialises a model at random, which must not move the
        seeded draws that follow."""
        import torch

        dtype = auto_dtype(self.dtype, self._device())
        with torch.random.fork_rng(devices=[]):
            encoder, tok = load_backbone(self.backbone, dtype, self._device())
        return encoder, tok, dtype

    def _split(self, encoder: Any) -> tuple[dict, int | None]:
        """PEFT layer options for ``lora_layers`` and the number of frozen layers to cache
        (None: the encoder runs whole at every step)."""
        total = n_layers(encoder)
        if self.lora_layers is None:
            k, extra = total, {}
        else:
            k = int(self.lora_layers)
            if total < 1 or k > total:
                have = f"1..{total} (the backbone's layers)" if total else \
                    "None (the backbone's config does not give its number of layers)"
                raise InputError(f"argument 'lora_layers' must lie in {have}, got "
                                 f"{self.lora_layers!r}")
            extra = {"layers_to_transform": list(range(total - k, total))}
            names = [n for n, _ in encoder.named_modules()]
            for pat in ("layers", "layer", "h", "blocks"):
                if any(f"{pat}.0." in f".{n}." or n.startswith(f"{pat}.0") for n in names):
                    extra["layers_pattern"] = pat
                    break
        cached = total - k if (self.cache_activations and total
                               and decoder_stack(encoder) is not None) else None
        return extra, cached

    def _wrap(self, encoder: Any) -> tuple[Any, list[str], int | None]:
        """LoRA adapters on the encoder plus the head (draws the initial weights from the RNG)."""
        import torch
        from peft import LoraConfig, get_peft_model

        targets = list(self.target_modules) if self.target_modules else auto_target_modules(encoder)
        extra, cached = self._split(encoder)
        cfg = LoraConfig(r=int(self.r), lora_alpha=float(self.alpha),
                         lora_dropout=float(self.dropout), target_modules=targets, bias="none",
                         **extra)
        peft_model = get_peft_model(encoder, cfg)
        hidden = int(getattr(encoder.config, "hidden_size", 0) or encoder.config.d_model)
        net = build_net(peft_model, hidden, int(self.head_hidden),
                        [len(c) for c in self._classes_list()], float(self.head_dropout),
                        self.pooling, cached).to(self._device())
        # adapters and head in fp32, the frozen backbone in its own dtype
        for p in net.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
        return net, targets, cached

    def _classes_list(self) -> list:
        return self.classes_ if isinstance(self.classes_, list) else [self.classes_]

    def _ensure_net(self):
        if getattr(self, "_net", None) is None:
            import torch
            from peft import set_peft_model_state_dict

            encoder, tok, _ = self._load_encoder()
            with torch.random.fork_rng(devices=[]):  # initial weights are overwritten below
                net, _, _ = self._wrap(encoder)
            set_peft_model_state_dict(net.encoder, self.adapter_state_)
            missing, unexpected = net.load_state_dict(
                {k: v for k, v in self.head_state_.items()}, strict=False)
            bad = [k for k in missing if not k.startswith("encoder.")]
            if bad or unexpected:
                raise ConfigError(f"saved head does not match the model: missing {bad}, "
                                  f"unexpected {unexpected}")
            net.eval()
            self._net, self._tok = net, tok
            self._ctx = getattr(encoder.config, "max_position_embeddings", None)
        return self._net

    def _tokenize(self, texts: list[str]):
        tok = self._tok
        refuse_special_tokens(tok, texts, "persona")
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

    def _length_batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Rows in batches of similar length (less padding), for the passes without gradients."""
        order = np.argsort(lengths, kind="stable")
        bs = max(4 * int(self.batch_size), 64)
        return [order[s:s + bs] for s in range(0, order.size, bs)]

    def _memo_prefix(self, net) -> tuple | None:
        """Key of this backbone's frozen layers in the process-wide memo, or None (no memo): a named
        backbone (the embedded model, a directory) always; a factory only if it declares
        ``deterministic = True`` (same weights on every call)."""
        if isinstance(self.backbone, str):
            b = self.backbone
        elif getattr(self.backbone, "deterministic", False) and _callable_path(self.backbone):
            b = _callable_path(self.backbone)
        else:
            return None
        return (b, str(self.dtype_), int(net.split), str(self._device()))

    def _cache_bottom(self, net, ids_list, lengths) -> list:
        """The frozen bottom layers' output for every row (one tensor per row), each persona computed
        once per process: rows already seen by any classifier on the same backbone come from the memo."""
        import torch

        hidden: list = [None] * len(ids_list)
        pre = self._memo_prefix(net)
        keys = [None if pre is None else pre + (tuple(int(t) for t in ids),) for ids in ids_list]
        todo = []
        for i, k in enumerate(keys):
            h = None if k is None else _BOTTOM_MEMO.get(k)
            if h is None:
                todo.append(i)
            else:
                _BOTTOM_MEMO.move_to_end(k)
                hidden[i] = h
        if not todo:
            return hidden
        todo = np.asarray(todo)
        batches = [todo[b] for b in self._length_batches(np.asarray(lengths)[todo])]
        net.eval()
        with torch.no_grad():
            for idx in progress(batches, len(batches), bool(self.progress),
                                f"LoRA: {net.split} frozen layers, once per persona"):
                ids, mask = self._batch(ids_list, idx)
                h = net.bottom(ids, mask)
                for r, i in enumerate(idx):
                    hidden[i] = h[r, :len(ids_list[i])].clone()
                    if keys[i] is not None:
                        _memo_put(keys[i], hidden[i])
        return hidden

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
        rows = np.arange(n)
        if self.max_rows is not None and n > int(self.max_rows):
            pick = np.random.default_rng([int(self.random_state), 1]).choice(
                n, int(self.max_rows), replace=False)
            rows = np.sort(pick)
        self.rows_used_ = rows
        with _torch_threads(self.num_threads):
            self._net = None
            encoder, tok, self.dtype_ = self._load_encoder()
            self._tok = tok
            self._ctx = getattr(encoder.config, "max_position_embeddings", None)
            ids_all, lengths = self._tokenize(texts)
            ids_list = [ids_all[i] for i in rows]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.random_state))
                net, self.target_modules_, cached = self._wrap(encoder)
                self._net = net
                self.n_cached_layers_ = int(cached or 0)
                hidden = None if cached is None else self._cache_bottom(net, ids_list,
                                                                        lengths[rows])
                train(self, net, _Rows(self, ids_list, hidden), codes[rows], observed[rows])
        from peft import get_peft_model_state_dict

        self.adapter_state_ = {k: v.detach().cpu().clone()
                               for k, v in get_peft_model_state_dict(net.encoder).items()}
        self.head_state_ = head_state(net)
        net.eval()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Option probabilities, columns in each item's canonical option order.

        One pass of the backbone per row, without gradients, in batches of similar length; all
        items' heads read the same pass.

        Returns
        -------
        ndarray, shape (n, K), or a list of them (one per item) for a battery.
        """
        import torch

        check_is_fitted(self, "head_state_")
        texts = self.texts(X)
        out = [np.zeros((len(texts), len(c))) for c in self._classes_list()]
        with _torch_threads(self.num_threads):
            net = self._ensure_net()
            net.eval()
            ids_list, lengths = self._tokenize(texts)
            split = getattr(net, "split", None)
            rows = _Rows(self, ids_list, None if split is None else self._cache_bottom(net, ids_list, lengths))
            batches = self._length_batches(lengths)
            with torch.inference_mode():
                for idx in progress(batches, len(batches), bool(self.progress), "LoRA predict"):
                    logits = net(*rows.batch(idx))
                    for j, lg in enumerate(logits):
                        out[j][idx] = torch.softmax(lg.double(), dim=-1).cpu().numpy()
        return out if self._battery else out[0]

    def predict(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Most likely option per row (a list of arrays for a battery)."""
        proba = self.predict_proba(X)
        if self._battery:
            return [c[np.argmax(p, axis=1)] for c, p in zip(self.classes_, proba)]
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_score(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Expected option score per row (item scores if ``item`` given, else numeric options,
        else ``1..K``) -- as the prompting simulators' and the Bayesian calibrator's
        ``predict_score``; a list of arrays for a battery."""
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

    def expected_score(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Same as :meth:`predict_score` (the name used before the three families shared one
        convention)."""
        return self.predict_score(X)

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
        from rectify.llm.finetune_io import save_lora

        save_lora(self, directory)

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
        from rectify.llm.finetune_io import load_lora

        return load_lora(cls, directory, backbone=backbone, render=render, device=device,
                         allow_callables=allow_callables)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.non_deterministic = False
        return tags


def _conversion_warning():
    from sklearn.exceptions import DataConversionWarning
    return DataConversionWarning
