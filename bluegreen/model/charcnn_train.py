"""Training the character (syllable) CNN member with PyTorch on CPU (the ``train`` extra).

Imported only by the full profile's training: serving reads the exported arrays with
:mod:`bluegreen.model.charcnn` and never imports torch.

The network reads the same normalised, space-padded code points as the linear members
(:func:`textfeat.code_points`), maps each to a character id (syllables and the frequent
symbols; the rest share one id), and computes

* convolutions of widths ``widths`` over the embedded characters, ReLU, then max and mean
  pooling over the windows (every window that touches at least one character);
* a hidden layer (ReLU) over the pooled vector and two heads on it: three class logits and
  one ordinal score ``s`` with nine thresholds, ``P(rating > k) = sigmoid(s - t_k)``.

The loss is the class cross-entropy plus ``rating_weight`` times the mean binary
cross-entropy of the nine cumulative "rating > k" targets: the rating is an auxiliary target
that tells a 1 from a 4 and a 10 from a 5, which the class labels do not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .charcnn import CharCNN, char_vocabulary
from .textfeat import code_points

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@attrs.frozen
class CNNConfig:
    dim: int = 48
    widths: tuple[int, ...] = (2, 3, 4, 5)
    filters: int = 96
    """Filters per width."""
    hidden: int = 128
    vocab_min_count: int = 5
    vocab_max: int = 6000
    max_len: int = 150
    """Training reads at most this many code points of a text (serving reads all of them:
    pooling does not depend on the length)."""
    epochs: int = 3
    batch: int = 256
    lr: float = 2e-3
    dropout: float = 0.3
    rating_weight: float = 1.0
    threads: int = 2


def _ids_of(texts: Sequence[str], table: npt.NDArray[np.int32], max_len: int) -> list[I64]:
    cp, offsets = code_points(list(texts))
    clipped = np.minimum(cp, table.size - 1)
    ids = table[clipped].astype(np.int64)
    ids[cp >= table.size] = 1
    return [ids[offsets[i] : min(offsets[i + 1], offsets[i] + max_len)] for i in range(len(texts))]


def _torch_model(cfg: CNNConfig, vocab: int) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kmax = max(cfg.widths)
            self.emb = nn.Embedding(vocab, cfg.dim)
            nn.init.normal_(self.emb.weight, std=0.3)
            self.convs = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.filters, w) for w in cfg.widths)
            n_pool = 2 * cfg.filters * len(cfg.widths)
            self.drop = nn.Dropout(cfg.dropout)
            self.hidden = nn.Linear(n_pool, cfg.hidden)
            self.cls = nn.Linear(cfg.hidden, 3)
            self.score = nn.Linear(cfg.hidden, 1)
            self.thresholds = nn.Parameter(torch.linspace(-2.0, 2.0, 9))

        def hidden_of(self, ids: Any, lengths: Any) -> Any:
            k = self.kmax
            x = nn.functional.pad(ids, (k - 1, k - 1), value=0)
            e = self.emb(x).transpose(1, 2)
            n_win = ids.shape[1] + k - 1
            wins = lengths + k - 1
            valid = (torch.arange(n_win)[None, :] < wins[:, None]).unsqueeze(1)
            h = torch.cat([torch.relu(c(e)[:, :, :n_win]) for c in self.convs], dim=1)
            h = h * valid
            pooled = torch.cat([h.amax(dim=2), h.sum(dim=2) / wins[:, None]], dim=1)
            return torch.relu(self.hidden(self.drop(pooled)))

        def forward(self, ids: Any, lengths: Any) -> tuple[Any, Any]:
            z = self.drop(self.hidden_of(ids, lengths))
            return self.cls(z), self.score(z).squeeze(1)

    return Net()


def _batches(lengths: I64, batch: int, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    """Batches of similar length (little padding), in random order."""
    order = np.argsort(lengths + rng.random(lengths.size), kind="stable")
    chunks = [order[i : i + batch] for i in range(0, order.size, batch)]
    rng.shuffle(chunks)
    return chunks


def _pad(seqs: Sequence[I64]) -> tuple[I64, I64]:
    lens = np.array([max(s.size, 1) for s in seqs], dtype=np.int64)
    out = np.zeros((len(seqs), int(lens.max())), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : s.size] = s
    return out, lens


@attrs.frozen
class TrainedCNN:
    model: CharCNN
    seconds: float
    history: list[dict[str, float]]


def train_charcnn(
    texts: Sequence[str],
    labels: I64,
    ratings: I64,
    cfg: CNNConfig,
    seed: int,
    *,
    progress: Callable[[str, float, float], None] | None = None,
    eval_set: tuple[Sequence[str], I64] | None = None,
    report_every: float = 5.0,
) -> TrainedCNN:
    """Fit the network on ``texts``; ``progress(stage, done_fraction, eta_seconds)`` is
    called every few seconds. Returns the exported numpy model."""
    try:
        import torch
    except ImportError:
        raise RuntimeError(
            "the accurate tier's CNN trains with torch: pip install torch (the train extra)"
        ) from None

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(seed)
    table, n_vocab = char_vocabulary(texts, cfg.vocab_min_count, cfg.vocab_max)
    seqs = _ids_of(texts, table, cfg.max_len)
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    net = _torch_model(cfg, n_vocab)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(seqs) / cfg.batch)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1
    )
    cum_targets = torch.arange(1, 10, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.int64)
    r_all = torch.as_tensor(ratings, dtype=torch.float32)
    history: list[dict[str, float]] = []
    step = 0
    last_report = time.perf_counter()
    t_train = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        loss_sum, n_seen = 0.0, 0
        for idx in _batches(lengths, cfg.batch, rng):
            ids, lens = _pad([seqs[i] for i in idx])
            ti = torch.as_tensor(idx)
            logits, score = net(torch.as_tensor(ids), torch.as_tensor(lens))
            loss = torch.nn.functional.cross_entropy(logits, y_all[ti])
            if cfg.rating_weight > 0:
                cum = score[:, None] - net.thresholds[None, :]
                target = (r_all[ti][:, None] > cum_targets[None, :]).float()
                bce = torch.nn.functional.binary_cross_entropy_with_logits(cum, target)
                loss = loss + cfg.rating_weight * bce
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            n_seen += len(idx)
            now = time.perf_counter()
            if progress is not None and now - last_report >= report_every:
                last_report = now
                rate = (now - t_train) / step
                progress(f"charcnn epoch {epoch + 1}/{cfg.epochs}", step / total,
                         rate * (total - step))  # fmt: skip
        entry = {"epoch": float(epoch + 1), "train_loss": loss_sum / max(n_seen, 1)}
        if eval_set is not None:
            from .evaluate import three_class_metrics

            model = export(net, table, cfg)
            z = model.class_logits(list(eval_set[0])).astype(np.float64)
            entry.update({f"eval_{k}": v for k, v in three_class_metrics(z, eval_set[1]).items()})
        history.append(entry)
        log.info("charcnn epoch %d: %s", epoch + 1, entry)
    return TrainedCNN(export(net, table, cfg), time.perf_counter() - t0, history)


def export(net: Any, table: npt.NDArray[np.int32], cfg: CNNConfig) -> CharCNN:
    """The network as plain arrays: the embedding folded into each convolution tap
    (``proj[v, j] = emb[v] @ W[:, :, j]^T``, zero for taps past a filter's width), so serving
    sums ``kmax`` rows per window instead of multiplying embeddings."""
    import torch

    with torch.no_grad():
        emb = net.emb.weight.detach().double().numpy()
        k = max(cfg.widths)
        n_f = cfg.filters * len(cfg.widths)
        proj = np.zeros((emb.shape[0], k, n_f), dtype=np.float64)
        bias = np.zeros(n_f, dtype=np.float64)
        for g, (conv, w) in enumerate(zip(net.convs, cfg.widths, strict=True)):
            wt = conv.weight.detach().double().numpy()  # (F, dim, w)
            cols = slice(g * cfg.filters, (g + 1) * cfg.filters)
            for j in range(w):
                proj[:, j, cols] = emb @ wt[:, :, j].T
            bias[cols] = conv.bias.detach().double().numpy()
        hidden_w = net.hidden.weight.detach().double().numpy().T
        hidden_b = net.hidden.bias.detach().double().numpy()
        head_w = np.concatenate(
            [net.cls.weight.detach().double().numpy(), net.score.weight.detach().double().numpy()]
        ).T  # (H, 4): three class logits, then the ordinal score
        head_b = np.concatenate(
            [net.cls.bias.detach().double().numpy(), net.score.bias.detach().double().numpy()]
        )
        thresholds = net.thresholds.detach().double().numpy()
    return CharCNN(
        char_ids=table,
        proj=proj.astype(np.float32),
        conv_bias=bias.astype(np.float32),
        hidden_w=hidden_w.astype(np.float32),
        hidden_b=hidden_b.astype(np.float32),
        head_w=head_w.astype(np.float32),
        head_b=head_b.astype(np.float32),
        thresholds=thresholds.astype(np.float32),
    )
