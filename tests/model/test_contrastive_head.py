"""The contrastive strategy's head: the logistic regression scikit-learn would fit."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from textclf.model.contrastive import contrastive_loss, cosine_loss, fit_linear_head


def blobs(count: int, classes: int, dims: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    centres = rng.normal(size=(classes, dims))
    return centres[labels] + rng.normal(scale=1.5, size=(count, dims)), labels


def test_the_head_is_scikit_learns_logistic_regression() -> None:
    for classes, c in ((2, 1.0), (4, 0.3)):
        x, y = blobs(120, classes)
        weight, bias = fit_linear_head(torch.tensor(x), torch.tensor(y), classes, c=c, max_iter=200)
        reference = LogisticRegression(C=c, max_iter=2000, tol=1e-10).fit(x, y)
        ours = (torch.tensor(x).float() @ weight.T + bias).softmax(1).numpy()
        np.testing.assert_allclose(ours, reference.predict_proba(x), atol=2e-3)


def test_multi_label_heads_are_one_logistic_regression_per_label() -> None:
    x, y = blobs(150, 3)
    targets = np.stack([y == 0, y != 1], axis=1).astype(np.float32)  # two overlapping labels
    weight, bias = fit_linear_head(torch.tensor(x), torch.tensor(targets), 2, max_iter=200)
    for label in range(2):
        reference = LogisticRegression(max_iter=2000, tol=1e-10).fit(x, targets[:, label])
        ours = torch.sigmoid(torch.tensor(x).float() @ weight[label] + bias[label]).numpy()
        np.testing.assert_allclose(ours, reference.predict_proba(x)[:, 1], atol=2e-3)


def test_pair_losses_are_zero_where_the_pairs_already_are_as_wanted() -> None:
    similar, apart = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    assert cosine_loss(torch.tensor([1.0, 1.0]), similar) == 0 and cosine_loss(torch.tensor([0.0, 0.0]), apart) == 0
    assert contrastive_loss(torch.tensor([0.2, 0.4]), apart) == 0  # beyond the margin: no further push
    assert contrastive_loss(torch.tensor([0.9]), torch.tensor([0.0])) > 0
