"""Training of :class:`rectify.llm.finetune.LoRAClassifier`: torch threads, progress bars, the
process-wide memo of the frozen layers' output, batches of rows, the loss and the epoch loop with
early stopping. The functions take the classifier (``est``) whose settings they read."""

from __future__ import annotations

import collections
import contextlib
import os
from typing import Any, Iterator

import numpy as np

from rectify.errors import ConfigError, InputError
from rectify.llm.base import progress


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on ``n`` CPU threads for the duration (None: leave torch's setting)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bar(enabled: bool, total: int, desc: str) -> Any:
    """A progress bar updated by hand (``update``, ``set_postfix``), or None."""
    if not enabled:
        return None
    bar = progress(range(total), total, True, desc)
    return bar if hasattr(bar, "update") else None


#: frozen bottom layers' output per (backbone, dtype, split, token ids), shared by every classifier of the
#: process: the cross-fitted folds, repeated pilots and the prediction of one frame compute each persona's
#: frozen layers once. Bounded (``RECTIFY_LORA_MEMO_MB``, default 1024 MB); least recently used first out.
_BOTTOM_MEMO: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
_BOTTOM_MEMO_BYTES = [0]


def _memo_limit() -> int:
    try:
        return max(0, int(os.environ.get("RECTIFY_LORA_MEMO_MB", "1024"))) * 2**20
    except ValueError:
        raise ConfigError("environment variable RECTIFY_LORA_MEMO_MB must be a whole number of megabytes, "
                          f"got {os.environ.get('RECTIFY_LORA_MEMO_MB')!r}") from None


def _memo_put(key: tuple, value: Any) -> None:
    size = int(value.element_size() * value.nelement())
    limit = _memo_limit()
    if size > limit:
        return
    _BOTTOM_MEMO[key] = value
    _BOTTOM_MEMO_BYTES[0] += size
    while _BOTTOM_MEMO_BYTES[0] > limit and _BOTTOM_MEMO:
        _, old = _BOTTOM_MEMO.popitem(last=False)
        _BOTTOM_MEMO_BYTES[0] -= int(old.element_size() * old.nelement())


def clear_activation_memo() -> None:
    """Forget the frozen layers' outputs remembered across classifiers (frees their memory).

    Examples
    --------
    >>> clear_activation_memo()
    >>> len(_BOTTOM_MEMO)
    0
    """
    _BOTTOM_MEMO.clear()
    _BOTTOM_MEMO_BYTES[0] = 0


class _Rows:
    """Token ids of the training rows and, when cached, the frozen layers' output per row."""

    def __init__(self, clf: "LoRAClassifier", ids_list: list, hidden: list | None):
        self.clf, self.ids_list, self.hidden = clf, ids_list, hidden

    def batch(self, idx: np.ndarray) -> tuple:
        import torch

        ids, mask = self.clf._batch(self.ids_list, idx)
        if self.hidden is None:
            return ids, mask, None
        first = self.hidden[idx[0]]
        h = torch.zeros((len(idx), ids.shape[1], first.shape[-1]), dtype=first.dtype,
                        device=first.device)
        for r, i in enumerate(idx):
            h[r, :self.hidden[i].shape[0]] = self.hidden[i]
        return ids, mask, h


def loss_weights(est, codes, observed, rows):
    import torch

    out = []
    for j, cls in enumerate(est._classes_list()):
        K = len(cls)
        if est.class_weight is None:
            out.append(None)
            continue
        if isinstance(est.class_weight, dict):
            w = np.ones(K)
            for lab, wt in est.class_weight.items():
                hit = [i for i, c in enumerate(np.asarray(cls).tolist()) if c == lab]
                if not hit:
                    raise InputError(f"class_weight names {lab!r}, not an option "
                                     f"{np.asarray(cls).tolist()}")
                w[hit[0]] = float(wt)
            out.append(torch.tensor(w, dtype=torch.float32, device=est._device()))
            continue
        c = codes[rows][observed[rows, j], j]
        counts = np.bincount(c, minlength=K).astype(float)
        seen = counts > 0
        w = np.zeros(K)
        w[seen] = counts.sum() / (seen.sum() * counts[seen])
        out.append(torch.tensor(w, dtype=torch.float32, device=est._device()))
    return out

def batch_loss(net, data: _Rows, codes, observed, idx, weights):
    import torch
    import torch.nn.functional as F

    logits = net(*data.batch(idx))
    total = 0.0
    for j, lg in enumerate(logits):
        obs = observed[idx, j]
        if not obs.any():
            continue
        target = torch.tensor(codes[idx, j][obs], dtype=torch.long, device=lg.device)
        sel = torch.tensor(np.flatnonzero(obs), dtype=torch.long, device=lg.device)
        total = total + F.cross_entropy(lg[sel].float(), target, weight=weights[j])
    return total

def split_rows(est, n, codes, observed, rng) -> tuple[np.ndarray, np.ndarray]:
    """Validation rows (stratified on the first item) and training rows."""
    n_val = int(round(float(est.val_fraction) * n))
    if not (n_val >= 1 and n - n_val >= 2):
        return np.array([], dtype=int), np.arange(n)
    from rectify.estimators.crossfit import make_folds

    strat = np.where(observed[:, 0], codes[:, 0], -1)
    k = max(2, int(round(1.0 / float(est.val_fraction))))
    folds = make_folds(n, min(k, n), y=strat, random_state=rng)
    return np.flatnonzero(folds == 0), np.flatnonzero(folds != 0)

def train(est, net, data: _Rows, codes, observed) -> None:
    import torch

    rng = np.random.default_rng(int(est.random_state))
    val, train = split_rows(est, len(data.ids_list), codes, observed, rng)
    est.n_val_ = int(val.size)
    weights = loss_weights(est, codes, observed, train)
    params = [p for p in net.parameters() if p.requires_grad]
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params, lr=float(est.lr), weight_decay=0.0)
    bs = int(est.batch_size)
    history = []
    best = (np.inf, None, 0)
    bad_epochs = 0
    per_epoch = -(-train.size // bs)
    bar = _bar(bool(est.progress), int(est.epochs) * per_epoch, "LoRA fit")
    for epoch in range(int(est.epochs)):
        net.train()
        order = train[rng.permutation(train.size)]
        tot, nb = 0.0, 0
        for start in range(0, order.size, bs):
            idx = order[start:start + bs]
            loss = batch_loss(net, data, codes, observed, idx, weights)
            if bar is not None:
                bar.update(1)
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
                    loss = batch_loss(net, data, codes, observed, idx, weights)
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
        if bar is not None:
            bar.set_postfix(epoch=epoch + 1, train_loss=round(rec["train_loss"], 4),
                            val_loss=round(rec["val_loss"], 4))
        if val.size and bad_epochs >= int(est.patience):
            break
    if bar is not None:
        bar.close()
    if best[1] is not None:
        net.load_state_dict(best[1], strict=False)
        est.best_epoch_ = best[2]
    else:
        est.best_epoch_ = len(history)
    est.history_ = history
