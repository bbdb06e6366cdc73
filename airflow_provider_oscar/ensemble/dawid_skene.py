"""Dawid-Skene: the true label of each input and each model's confusion, without any labels.

Dawid and Skene (Applied Statistics, 1979) model each model ``m`` by a confusion matrix
``e_m[l | c]``, the probability that it answers ``l`` when the truth is ``c``, and the classes by
priors ``π_c``. EM alternates: the posterior of each input's class given the models' top-1 answers
(E-step), then the priors and confusions given the posteriors (M-step). As in crowd-kit's
``DawidSkene`` (the reference implementation): the start is the majority vote's vote shares,
counts and priors are clipped below at ``1e-10`` before normalising, and EM stops when the
evidence lower bound per answer rises by less than ``tol`` (or after ``iterations``).

Stored sparsely: a confusion count exists only for an (answer, candidate class) pair that
occurs. With few classes every class is a candidate of every input, as in the dense model; with
many (a top-1 over 10,000 species), an input's candidates are the labels its models answered, so
that memory grows with inputs x models², never with inputs x classes or models x classes². The
dense model gives such a class a posterior too, usually negligible (of order ``1e-10`` per
model that did not answer it), but not always: its rarely used classes get near-uniform
confusion rows, which can outweigh the answered classes of an input whose answers all disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-10  # crowd-kit's clip of counts and priors
DENSE_CELLS = 1 << 22  # answers x classes up to which every class is a candidate of every input


@dataclass(frozen=True)
class DawidSkeneFit:
    """Posteriors per candidate (input, class), sorted by input then class, and the estimates."""

    cand_input: np.ndarray  # (candidates,)
    cand_label: np.ndarray  # (candidates,)
    posterior: np.ndarray  # (candidates,) sums to 1 per input that some model answered
    reliability: np.ndarray  # (models,) expected accuracy: mean posterior of the model's answers
    priors: np.ndarray  # (candidates,) the prior of each candidate's class
    iterations: int
    converged: bool


def dawid_skene(
    answers: np.ndarray,
    *,
    iterations: int = 100,
    tol: float = 1e-5,
    candidates: str = "auto",
) -> DawidSkeneFit:
    """Fit on ``answers``, an integer ``(inputs, models)`` array of class ids (-1: no answer).

    ``candidates`` are the classes an input may be: ``all`` the classes answered anywhere (the
    dense model, exact), or only the ones ``answered`` for it (sparse: far less memory for many
    classes, and a class nobody answered gets no posterior); ``auto`` takes ``all`` while the
    answers times the classes stay under ``DENSE_CELLS``.
    """
    answers = np.asarray(answers)
    n_inputs, n_models = answers.shape
    i_obs, m_obs = np.nonzero(answers >= 0)
    l_obs = answers[i_obs, m_obs].astype(np.int64)
    n_labels = int(l_obs.max()) + 1 if l_obs.size else 1
    key = i_obs.astype(np.int64) * n_labels + l_obs
    every = np.unique(l_obs)
    if candidates == "all" or (candidates == "auto" and l_obs.size * every.size <= DENSE_CELLS):
        cand_key = (np.unique(i_obs)[:, None] * n_labels + every).ravel()
        obs_cand = np.searchsorted(cand_key, key)
        votes = np.bincount(obs_cand, minlength=cand_key.size)
    elif candidates in ("answered", "auto"):
        cand_key, obs_cand, votes = np.unique(key, return_inverse=True, return_counts=True)
    else:
        raise ValueError(f"candidates must be 'auto', 'all' or 'answered', not {candidates!r}")
    cand_input, cand_label = cand_key // n_labels, cand_key % n_labels
    # the start: the majority vote's shares
    answered = np.bincount(i_obs, minlength=n_inputs)
    post = votes / answered[cand_input]
    # triples: each answer (i, m, l) with each candidate c of input i -> count cell (m, l, c)
    first = np.searchsorted(cand_input, np.arange(n_inputs))
    size = np.bincount(cand_input, minlength=n_inputs)[i_obs]  # candidates per answer
    obs_rep = np.repeat(np.arange(l_obs.size), size)
    t_cand = (
        first[i_obs[obs_rep]] + np.arange(obs_rep.size) - np.repeat(np.cumsum(size) - size, size)
    )
    cell_key = (m_obs[obs_rep] * n_labels + l_obs[obs_rep]) * n_labels + cand_label[t_cand]
    cells, t_cell = np.unique(cell_key, return_inverse=True)
    cell_model = cells // (n_labels * n_labels)
    cell_class = cells % n_labels
    # the labels each model gave: the rows of its confusion matrix in the dense form
    rows = np.unique(m_obs * n_labels + l_obs)
    labels_of_model = np.bincount(rows // n_labels, minlength=n_models)
    classes, class_of_cand = np.unique(cand_label, return_inverse=True)
    n_classes = classes.size
    m_cell_class = cell_model * n_classes + np.searchsorted(classes, cell_class)
    # in the dense form, the cells that never occur hold EPS each
    occurring = np.bincount(m_cell_class, minlength=n_models * n_classes)
    absent = (np.repeat(labels_of_model, n_classes) - occurring) * EPS
    elbo, done, steps = -np.inf, False, 0

    def m_step(post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log confusion per cell, log prior per class."""
        count = np.maximum(np.bincount(t_cell, post[t_cand], cells.size), EPS)
        mass = np.bincount(m_cell_class, count, n_models * n_classes) + absent
        log_conf = np.log(count) - np.log(mass[m_cell_class])
        prior = np.maximum(np.bincount(class_of_cand, post, n_classes) / n_inputs, EPS)
        return log_conf, np.log(prior)

    log_conf, log_prior = m_step(post)
    while steps < iterations:
        steps += 1
        loglik = log_prior[class_of_cand] + np.bincount(t_cand, log_conf[t_cell], cand_key.size)
        top = np.full(n_inputs, -np.inf)
        np.maximum.at(top, cand_input, loglik)
        weight = np.exp(loglik - top[cand_input])
        post = weight / np.bincount(cand_input, weight, n_inputs)[cand_input]
        log_conf, log_prior = m_step(post)
        # crowd-kit adds the log prior once per answer
        expected = np.bincount(t_cand, log_conf[t_cell], cand_key.size)
        expected += answered[cand_input] * log_prior[class_of_cand]
        joint = float((post * expected).sum())
        entropy = float(-(post * np.log(np.maximum(post, EPS))).sum())
        new = (joint + entropy) / max(l_obs.size, 1)
        if new - elbo < tol:
            done = True
            break
        elbo = new
    reliability = np.bincount(m_obs, post[obs_cand], n_models) / np.maximum(
        np.bincount(m_obs, minlength=n_models), 1
    )
    return DawidSkeneFit(
        cand_input=cand_input,
        cand_label=cand_label,
        posterior=post,
        reliability=reliability,
        priors=np.exp(log_prior)[class_of_cand],
        iterations=steps,
        converged=done,
    )
