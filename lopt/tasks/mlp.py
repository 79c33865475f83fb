"""MLP classifiers and linear models on Datasets: Andrychowicz et al. 2016's MNIST-MLP optimizee (on
digits), Wang, Sun & Xu 2019's activation and depth generalization tasks, and logistic / linear
regression."""
from __future__ import annotations

from typing import Optional, Sequence

import jax

from lopt.tasks import datasets
from lopt.tasks.base import Task, TaskFamily
from lopt.tasks.models import (
    ACTIVATIONS,
    INITIALIZERS,
    MLP,
    Linear,
    check_choice,
    check_widths,
    linen_model,
    softmax_xent,
    squared_error,
)
from lopt.tasks.supervised import supervised_family

MAX_DEPTH = 10


def mlp_family(dataset: str = "digits", hidden: Sequence[int] = (20,),
               activation: str = "sigmoid", initializer: str = "lecun_normal",
               batch_size: int = 128, subset_size: Optional[int] = None,
               init_scale=(1.0, 1.0), name: Optional[str] = None) -> TaskFamily:
    """Cross-entropy of an MLP (1–10 hidden layers) on a classification dataset, or its
    squared error on a regression dataset (one output).

    The default (20 hidden sigmoid units, batch 128) is the L2L MNIST optimizee of Andrychowicz et
    al. 2016, on the digits data. Instances differ in initialization and minibatches, and, when
    given, in ``init_scale`` (log-uniform range) and the train subset of ``subset_size`` examples.
    """
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("initializer", initializer, INITIALIZERS)
    hidden = check_widths("hidden", hidden)
    if len(hidden) > MAX_DEPTH:
        raise ValueError(f"hidden must have at most {MAX_DEPTH} layers; got {len(hidden)}")
    data = datasets.load(dataset)
    if data.kind not in ("classification", "regression"):
        raise ValueError(f"dataset must be a classification or regression dataset for an MLP; "
                         f"{dataset!r} is {data.kind}")
    regression = data.kind == "regression"
    model = linen_model(MLP(hidden=hidden, out=1 if regression else data.num_classes,
                            activation=activation, initializer=initializer),
                        squared_error if regression else softmax_xent)
    name = name or f"{dataset}_mlp_" + "x".join(map(str, hidden)) + f"_{activation}"
    return supervised_family(name, data, model, batch_size=batch_size, subset_size=subset_size,
                             init_scale=init_scale)


def mlp_classifier(dataset: str = "digits", hidden: Sequence[int] = (20,),
                   activation: str = "sigmoid", batch_size: int = 128) -> Task:
    """One MLP task (the family's instance with unit scales and the whole train split)."""

    family = mlp_family(dataset, hidden, activation, batch_size=batch_size)
    return family.build(family.sample(jax.random.PRNGKey(0)))


def linear_family(dataset: str = "iris", batch_size: int = 32) -> TaskFamily:
    """Logistic (softmax) regression on a classification dataset, or least-squares linear
    regression on a regression dataset."""
    data = datasets.load(dataset)
    if data.kind == "classification":
        model = linen_model(Linear(out=data.num_classes), softmax_xent)
        kind = "logistic"
    elif data.kind == "regression":
        model = linen_model(Linear(out=1), squared_error)
        kind = "linear"
    else:
        raise ValueError(f"dataset must be tabular (classification or regression); "
                         f"{dataset!r} is {data.kind}")
    return supervised_family(f"{dataset}_{kind}", data, model, batch_size=batch_size)
