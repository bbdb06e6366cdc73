"""The log-linear pool's fit: exponents of a weighted product of the models' probabilities."""

from __future__ import annotations

import numpy as np

from airflow_provider_oscar.ensemble.parts import Part


def fit_exponents(part: Part, target: np.ndarray, num_classes: int, floor: float) -> np.ndarray:
    """The exponents ``a >= 0`` of the log-linear pool minimising its log loss.

    As the geometric mean pools (``score_part``), an input's exponents are renormalised over the
    models that answered it: ``e_mi = a_m Σa / Σ_{m answered i} a``. Projected gradient descent
    with a backtracking step, from ``a = 1`` (the plain product of experts).
    """
    n_inputs, n_models = part.present.shape
    ci = part.cand_input
    counts = np.bincount(ci, minlength=n_inputs)
    rest = (num_classes - counts).astype(float)
    room = np.maximum(num_classes - part.length, 0)
    fill = np.where(room > 0, part.residual / np.maximum(room, 1), 0.0)  # (inputs, models)
    log_fill = np.log(np.maximum(fill, floor)).T  # (models, inputs)
    log_value = log_fill[:, ci].copy()  # (models, candidates)
    log_value[part.slot % n_models, part.cand] = np.log(np.maximum(part.prob, floor))
    answered = part.present.T.astype(float)  # (models, inputs)
    log_value *= answered[:, ci]
    log_fill *= answered
    truth_at = np.full(n_inputs, -1)
    hit = np.flatnonzero(part.cand_label == target[ci])
    truth_at[ci[hit]] = hit
    truth_log = np.where(truth_at[None, :] >= 0, log_value[:, np.maximum(truth_at, 0)], log_fill)

    def loss_and_gradient(a: np.ndarray) -> tuple[float, np.ndarray]:
        share = a @ answered  # (inputs,)
        scale = np.where(share > 0, a.sum() / np.where(share > 0, share, 1.0), 0.0)
        e = a[:, None] * scale[None, :]  # (models, inputs)
        z = (e[:, ci] * log_value).sum(axis=0)  # (candidates,)
        z_rest = (e * log_fill).sum(axis=0)  # (inputs,)
        top = np.maximum(np.full(n_inputs, -np.inf), z_rest)
        np.maximum.at(top, ci, z)
        p = np.exp(z - top[ci])
        p_rest = rest * np.exp(z_rest - top)
        norm = np.bincount(ci, p, n_inputs) + p_rest
        loss = float((np.log(norm) + top - (e * truth_log).sum(axis=0)).mean())
        listed = np.stack([np.bincount(ci, p * row, n_inputs) for row in log_value])
        expected = (listed + p_rest * log_fill) / norm
        g_e = (expected - truth_log) / n_inputs  # d loss / d e, (models, inputs)
        ge_a = (g_e * a[:, None]).sum(axis=0)
        inv = np.where(share > 0, 1.0 / np.where(share > 0, share, 1.0), 0.0)
        grad = (
            (g_e * scale).sum(axis=1)
            + (ge_a * inv).sum()
            - a.sum() * (answered * (ge_a * inv * inv)).sum(axis=1)
        )
        return loss, grad

    a = np.ones(n_models)
    loss, grad = loss_and_gradient(a)
    step = 1.0
    for _ in range(500):
        while True:
            trial = np.maximum(a - step * grad, 0.0)
            if trial.sum() <= 0:
                step /= 2
                continue
            new_loss, new_grad = loss_and_gradient(trial)
            if new_loss <= loss - 1e-4 * float(grad @ (a - trial)) or step < 1e-10:
                break
            step /= 2
        if abs(loss - new_loss) < 1e-12:
            a, loss = trial, new_loss
            break
        a, loss, grad = trial, new_loss, new_grad
        step *= 2
    return a
