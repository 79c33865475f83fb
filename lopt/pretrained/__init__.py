"""Learned optimizers shipped with lopt, each made by a committed command: what it was trained on
and how it scored are in its description (``lopt list``) and in the benchmark it names."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (file, description: what it is, what it was trained on, how it scored and where).
PRETRAINED = {
    "celo_tiny": ("celo_tiny.lopt",
                  "general-purpose celo (normalized Adafactor-feature MLP + learned scheduler) "
                  "from `lopt train --recipe celo_tiny` (PES, 2,000 steps on 8x8/14x14 image "
                  "MLPs and a conv net); needs num_steps=. On 27 unseen tasks: 0 divergences, "
                  "33 catastrophic runs of 216, beats Adam lr 1e-3 on 19, IQM normalized loss "
                  "0.040 vs Adam lr 1e-3 0.071, globally tuned Adam 0.021, per-task Adam "
                  "0.0086; IQM speedup 0.63 over globally tuned Adam (worst task 0.003, the "
                  "10,000-step breast_cancer_mlp; benchmarks/pretrained/)"),
    "adafac_tiny": ("adafac_tiny.lopt",
                    "general-purpose adafac_mlp (small_fc_lopt's Adafactor-feature MLP, started as "
                    "normalized momentum) from `lopt train --recipe adafac_tiny` (PES, 2,000 steps "
                    "on 8x8/14x14 image MLPs and a conv net). On 27 unseen tasks: 0 divergences, "
                    "25 catastrophic runs of 216, beats Adam lr 1e-3 on 21, IQM normalized loss "
                    "0.019 vs Adam lr 1e-3 0.071, globally tuned Adam 0.021, per-task Adam "
                    "0.0086; IQM speedup 0.80 over globally tuned Adam (worst task 0.12, the "
                    "3,000-step digits_mlp_3x32; benchmarks/pretrained/)"),
    "celo2_broad": ("celo2_broad.lopt",
                    "general-purpose celo2 (Celo2's normalized, orthogonalized step, started as "
                    "Muon) from `lopt train --recipe celo2_broad` (PES, 400 steps, 33 minutes "
                    "on 2 CPU cores, on mixture:broad: image MLP and conv net, autoencoder, "
                    "regression, "
                    "tabular, char LSTM, tiny transformer; no meta-test data); its one learning "
                    "rate 0.0070 chosen on meta-training tasks. On 27 unseen tasks: 0 "
                    "divergences but 32 catastrophic runs of 216, beats Adam lr 1e-3 on 19, "
                    "IQM normalized loss 0.027 vs per-task Adam 0.0086; IQM speedup 0.84 over "
                    "Adam tuned once (worst task 0: the deep wide regression at 300 and 1,000 "
                    "steps, at 1,000 ending 5.2e4x Adam lr 1e-3's final loss), 0.54 over "
                    "per-task Adam "
                    "(benchmarks/pretrained/). Why: its step RMS stays at "
                    "0.0070 whatever the gradients say, so as a drop-in on deep ReLU regressions "
                    "and 1,000-step runs it ends 236-83,000x above Adam lr 1e-3 unless given a "
                    "decaying schedule (benchmarks/pretrained/diagnosis_v3.md)"),
    "celo2_graft": ("celo2_graft.lopt",
                    "the previous headline (superseded by celo2_graft_v2): celo2's learned, "
                    "orthogonalized "
                    "direction with Adam's per-tensor step size grafted on and a warm-up + "
                    "cosine schedule over the run inside the rule; needs num_steps=. From "
                    "`lopt train --recipe celo2_graft` (PES, 800 outer steps warm-started from "
                    "celo2_broad, about 1.3 hours on 2 CPU cores; Celo2 took 4.5 GPU-hours) on "
                    "mixture:robust: mixture:broad plus deep, wide and loss-scaled MLPs and a "
                    "2-layer transformer, no meta-test data; its one learning rate 0.028 "
                    "chosen on those tasks by the worst one (benchmarks/pretrained/step_scale/). "
                    "Meta-validation 0.052 at its start, 0.051 after meta-training: the gain "
                    "over celo2_broad is the rule's form, not the training. As a drop-in on "
                    "deep ReLU regressions (3 seeds): 9-15,000x below Adam lr 1e-3 on five of "
                    "six problems; worst task: a 1,000-step 4x256 regression, 5.8x above Adam "
                    "lr 1e-3 (its weights grow 23 -> 217; benchmarks/pretrained/diagnosis_v3.md). "
                    "On 27 unseen tasks: 0 divergences, 3 catastrophic runs of 216 (the "
                    "1,000-step deep wide regression), beats Adam lr 1e-3 on 25, IQM "
                    "normalized loss -0.0017, IQM speedup 1.96 over globally tuned Adam (worst "
                    "task 0.39), 1.57 over per-task Adam (benchmarks/pretrained/)"),
    "celo2_graft_v2": ("celo2_graft_v2.lopt",
                       "the headline general-purpose optimizer: celo2_graft's rule and "
                       "meta-trained theta (800 PES steps on mixture:robust, about 1.3 hours on "
                       "2 CPU cores; Celo2 took 4.5 GPU-hours) with decoupled weight decay "
                       "inside the rule "
                       "(lambda 0.1, under its own warm-up + cosine schedule); needs num_steps=. "
                       "Its learning rate 0.028 and weight decay chosen on the tuning instances "
                       "of celo2_graft's eleven meta-training families (mixture:robust, no "
                       "meta-test data) by the worst family over 300- and 2,000-step runs "
                       "(benchmarks/pretrained/step_scale/): without weight decay the 2,000-step "
                       "runs of the deep regression at loss scale 1e3 end worse at 0.028 than "
                       "at 0.014, with lambda 1 the autoencoder loses 0.4. As a drop-in on deep "
                       "ReLU regressions (3 seeds): 13-373x below Adam lr 1e-3 on all six "
                       "problems, the 1,000-step 4x256 regression celo2_graft lost included "
                       "(0.00021 vs 0.0027; benchmarks/pretrained/diagnosis_v3.md). Step: 7.1x "
                       "(nnx.jit) / 9.3x (jax.jit) Adam's on a 3x256 MLP at batch 128 on CPU "
                       "(2.9x / 3.2x at batch 1,024), 1.1x on a conv "
                       "net (benchmarks/perf/step_cost/). On 27 unseen tasks, untuned: 0 "
                       "divergences, 0 catastrophic runs of 216, beats Adam lr 1e-3 on 27, IQM "
                       "normalized loss -0.0009, IQM speedup 1.87 over globally tuned Adam (worst "
                       "task 0.72, a 2,000-step transformer LM) and 1.46 over per-task Adam "
                       "(worst 0.48, breast_cancer_mlp; benchmarks/pretrained/)"),
    "celo_released": ("celo_released.lopt",
                      "Celo's published weights (Moudgil et al. 2025, amoudgl/celo: MIT, see "
                      "LICENSE.celo_released), meta-trained by its authors on 4 image MLP tasks "
                      "with PES; imported by `lopt import celo theta.state` (sha256 35683c61...); "
                      "rule celo_reference, equal to the reference code to 1e-5; needs "
                      "num_steps= and the loss. On 27 unseen tasks: 0 divergences, 13 catastrophic "
                      "runs of 216, beats Adam lr 1e-3 on 23, IQM normalized loss 0.0071, IQM "
                      "speedup 1.48 over globally tuned Adam (worst task 0.004: the 10,000-step "
                      "breast_cancer_mlp, 2,800x Adam lr 1e-3's final loss), 1.12 over per-task "
                      "Adam; with its lr tuned per task 0 catastrophic (benchmarks/pretrained/)"),
    "l2l_lstm_quadratic": ("l2l_lstm_quadratic.lopt",
                           "L2L LSTM meta-trained by `lopt train` (defaults) on 10x10 quadratics; "
                           "final loss on evaluation instances 0.210 vs tuned Adam 0.285; "
                           "diverges off "
                           "quadratics; benchmarks/l2l_quadratic/"),
    "l2l_lstm_mnist": ("l2l_lstm_mnist.lopt",
                       "Andrychowicz et al. 2016's L2L LSTM meta-trained (TBPTT, 60 steps) on a "
                       "20-sigmoid MLP on "
                       "MNIST 14x14, T = 100: final loss on evaluation instances 0.32 vs tuned "
                       "Adam 0.21 "
                       "(benchmarks/l2l, stage lstm_mnist)"),
    "rnnprop_mnist": ("rnnprop_mnist.lopt",
                      "Wang, Sun & Xu 2019's RNNprop meta-trained (TBPTT, 60 steps) on a "
                      "20-sigmoid MLP on "
                      "MNIST 14x14, T = 100: final loss on evaluation instances 0.195 vs tuned "
                      "Adam 0.209 "
                      "(benchmarks/hyperadam, Table 1)"),
    "hyperadam_mnist": ("hyperadam_mnist.lopt",
                        "Wang, Sun & Xu 2019's HyperAdam meta-trained (TBPTT, 60 steps) on a "
                        "20-sigmoid MLP "
                        "on MNIST 14x14, T = 100: final loss on evaluation instances 0.180 vs "
                        "tuned Adam 0.209 "
                        "(benchmarks/hyperadam, Table 1)"),
}


def path(name: str) -> str:
    """The file of the pretrained optimizer ``name``."""
    if name not in PRETRAINED:
        raise ValueError(f"pretrained name must be one of {sorted(PRETRAINED)} (or a path to a "
                         f"file written by lopt.save); got {name!r}")
    return os.path.join(_HERE, PRETRAINED[name][0])
