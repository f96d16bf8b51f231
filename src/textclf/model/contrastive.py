"""The two halves of contrastive few-shot training (`strategy=contrastive`), without Lightning.

Phase 1 pulls the pooled embeddings of same-class pairs together and pushes other pairs apart (`PAIR_LOSSES`);
phase 2 fits the network's linear head on the embeddings of the training texts, as a logistic regression
(`fit_linear_head`): L-BFGS on the exact objective of scikit-learn's `LogisticRegression(C=c)` (SetFit's
default head), one sigmoid per label for multi-label data. The head stays the network's own `nn.Linear`, so
the classifier is evaluated, served and exported like any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from textclf.model.network import PooledNetwork

# sentence-transformers' ContrastiveLoss margin on the cosine distance
MARGIN = 0.5


def cosine_loss(similarity: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SetFit's default (sentence-transformers' CosineSimilarityLoss): the cosine similarity regressed on 1 or 0."""
    return F.mse_loss(similarity, target)


def contrastive_loss(similarity: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Hadsell et al.'s contrastive loss on the cosine distance: similar pairs pulled to distance 0,
    others pushed beyond `MARGIN` and no further."""
    distance = 1 - similarity
    return 0.5 * (target * distance.pow(2) + (1 - target) * F.relu(MARGIN - distance).pow(2)).mean()


PAIR_LOSSES = {"cosine": cosine_loss, "contrastive": contrastive_loss}


def pair_similarity(
    net: PooledNetwork,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    anchor_rows: torch.Tensor,
    partner_rows: torch.Tensor,
) -> torch.Tensor:
    """The cosine similarity of each pair: its anchor's and its partner's rows of the batch's examples."""
    embeddings = net.pooled(input_ids, attention_mask).float()
    return F.cosine_similarity(embeddings[anchor_rows], embeddings[partner_rows])


def fit_linear_head(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    outputs: int,
    c: float = 1.0,
    max_iter: int = 100,
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a logistic regression on `embeddings` with `outputs` rows (classes, or labels of
    multi-hot rows): multinomial over class indices, or one
    sigmoid per label over multi-hot rows. It minimises C x (the summed, weighted log-loss) + |W|²/2 (bias
    not penalised), scikit-learn's objective, with L-BFGS in float64. Two classes are one sigmoid, as in
    scikit-learn, written as the two logits -z/2 and z/2 (whose softmax is that sigmoid)."""
    if targets.ndim == 1 and outputs == 2:
        weight, bias = fit_linear_head(embeddings, targets[:, None].float(), 1, c, max_iter, sample_weights)
        return torch.cat([-weight, weight]) / 2, torch.cat([-bias, bias]) / 2
    x = embeddings.double()
    multi_hot = targets.ndim == 2
    weights = torch.ones(len(x), dtype=torch.float64) if sample_weights is None else sample_weights.double()
    weight = torch.zeros(outputs, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        if multi_hot:
            losses = F.binary_cross_entropy_with_logits(logits, targets.double(), reduction="none").sum(1)
        else:
            losses = F.cross_entropy(logits, targets.long(), reduction="none")
        loss = c * (weights * losses).sum() + 0.5 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach().float(), bias.detach().float()
