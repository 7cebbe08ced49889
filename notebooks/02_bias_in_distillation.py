# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -papermill,-execution
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -papermill,-widgets
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Bias in distillation: amplified or suppressed?
#
# Paper A's analysis. Train a model on the whole biased set, on a random real subset of IPC images per
# class, and on a set distilled from the biased data (DM, and gradient matching: DC), then test all of them
# on balanced data. Its findings:
#
# * **colour and background bias are amplified**: the distilled set encodes the shortcut even more than the
#   data it came from, so its model is far worse than the whole-data model on bias-conflicting test images
#   (paper A's measure, and the one our claims check: distilled against whole data);
# * **corruption bias is suppressed**: distillation loses little, or even helps.
#
# Two limits of our version of this comparison. A random real subset of the same size can be nearly as biased
# as the distilled set (`acc vs random` below), and then a gap to whole data measures having only a few images
# per class at least as much as distilling them. And the whole-data models train for few epochs
# (`params/<profile>/defaults.yaml`: 1 epoch in the quick profile, against 200 for a 10-image-per-class
# set), so the whole-data baseline is under-trained. Paper B's numbers show the first limit too, on its
# C-MNIST (FG) at IPC 10 (90% majority, 20,000 iterations; a related dataset, not this one): whole data 97.71%,
# a random real subset 30.75%, DM 25.01%.
#
# CIFAR-10 cannot be downloaded on the CPU machine this companion was built on, so the quick profile builds
# the corruption bias on Fashion-MNIST (`corrupted_cifar10` with `source: fashion_mnist`), labelled as such.
#
# **Scale.** The quick profile's runs (the committed outputs) are far shorter than the papers'. DM runs 100
# iterations (the papers: 20,000) at image learning rate 20 (the papers: 1); at IPC 50 this profile uses lr 100
# and 100 evaluation epochs. The ConvNet has width 64 (128), and each step takes 128 real images per class
# (256). DC runs 40 iterations (1,000) at image lr 2 (0.1) with outer / inner loops 5 / 5 (10 / 50 at IPC 10).
# Each row is **one distillation and one evaluation model** (paper B averages 5 × 10),
# so a difference of a point or two is within one model's noise (notebook 05 measures the spread over five
# models: about 1 point on the ConvNet). `params/quick/defaults.yaml` holds every value; the later notebooks
# refer here.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
suite = None  # None: the runs of params/experiments/02_bias_in_distillation.yaml at this profile, on params/<profile>/defaults.yaml
claims = None  # None: the profile's claims in the same file (see paperlib.report.checks)

# %%
from paperlib import notebook as nb
from paperlib.report import plots

figures = nb.setup(profile)
specs = nb.suite_specs(profile, suite, "02_bias_in_distillation")
table = nb.run_all(specs)  # stored runs load at once; new ones are computed and cached
nb.save_table(table, figures, "02_bias_in_distillation");

# %% [markdown]
# ## Results
# Accuracy on the balanced test split, and separately on its bias-aligned and bias-conflicting images (%).
# `whole data` rows trained on the whole biased training set (1 epoch in the quick profile, see above).

# %%
nb.metrics_view(table, extra=("dataset", "source", "ratio", "ipc"))  # source: the images a preset was built from

# %% [markdown]
# ## Amplified or suppressed?
# For each bias, the distilled model against the whole-data model (`distilled - whole`, accuracy points) and
# against a random real subset of the same size. `reading` compares with whole data only, by two thresholds
# (`AMPLIFIED_GAP` and `SHORTCUT_LEVEL` in `paperlib/report/tables.py`):
#
# * *amplified*: the distilled model is more than 10 points below the whole-data model on conflicting images;
# * else *whole data biased too*: the whole-data model itself stays below 25% on conflicting images, so there
#   is nothing left to amplify;
# * else *not amplified*: distillation loses little or helps. Paper A calls this *suppressed*; the table does
#   not, as the comparison alone cannot tell it from a bias the whole-data model shares (below).
#
# `acc vs random` shows "–" where the comparison has no random subset of the run's IPC. In the quick profile
# the random subset is about as biased as the DM set (colour 5%: 24.1% against 22.1% accuracy, 15.7% against
# 13.5% on conflicting images; corruption: 50.6% against 50.0%). So "amplified" here means far below whole
# data, not below a random subset of the same size.
#
# On the corruption rows distillation loses little: DM is about 3 points below whole data on conflicting
# images. But the 1-epoch whole-data model is itself about as biased: 98.7% on aligned against 47.9% on
# conflicting images, where DM has 96.6% against 44.8%. The whole-data model clears the 25% threshold, so the
# table says `not amplified`; the bias is there on both sides, not suppressed.

# %%
nb.bias_effect(table)

# %% [markdown]
# Where paper A reports a number for the same setting, it sits beside ours (the paper's runs are far longer;
# ours follow `params/<profile>/defaults.yaml`). The numbers of paper A this companion records
# (`paperlib/report/reference.py`) are its headline three on CMNIST 5% at IPC 50 (vanilla DM, DM + KDE and the
# debiasing baseline on the DM set, notebook 03). Of these only vanilla DM is run here, and only by the paper
# profile, so at the smoke and quick profiles the table is empty:

# %%
nb.paper_vs_companion(table, profile)

# %% [markdown]
# ## Across conflict ratios
# The whole-data model recovers as the conflict ratio grows; the distilled set gains far less (quick profile,
# conflicting images at 1 / 5 / 20% conflicting: whole data 13.8 / 60.2 / 89.2%, DM 12.9 / 13.5 / 33.2%).

# %%
colour = table[(table["dataset"] == "cmnist") & table["run"].isin(["whole", "dm"])]
fig, axes = plots.subplots(1, 2, figsize=(10, 3.4))
plots.plot_ratio_curves(colour, "acc", ax=axes[0], title="CMNIST: accuracy", hue="distilled_set")
plots.plot_ratio_curves(colour, "acc_conflicting", ax=axes[1], title="CMNIST: bias-conflicting accuracy",
                        hue="distilled_set")
nb.save(axes[0], figures, "02_ratio_curves", pdf=True);

# %% [markdown]
# Every run side by side, aligned against conflicting accuracy: amplification is a conflicting bar far below
# its aligned bar where whole data's two bars stand closer (colour at 5%), while on corruption the two models'
# bars look alike.

# %%
ax = plots.plot_aligned_conflicting(table)
nb.save(ax, figures, "02_aligned_conflicting", pdf=True);

# %% [markdown]
# ## What the distilled images show
# Each row is one class. With colour and background bias nearly all the distilled images take the majority
# colour or texture of their class (a few, started from minority-group real images, keep their own colour):
# the shortcut is almost all that is left to learn. Compare with the corruption bias: each class's images
# carry its majority corruption too (noise, blur, pixelation), but the garment's shape stays visible under it,
# and the DM model keeps 96.6% on aligned images against the colour runs' 99.8–99.9%.

# %%
nb.show_grids(specs, figures, "02_distilled_grids");

# %% [markdown]
# ## What this run checks
# Each claim of this notebook is a comparison with a margin (the experiment file's `claims`): the verdict says
# whether it holds and what it measured, to compare with the margin in the `test` column. A profile with
# reference numbers (`params/<profile>/references.yaml`; only the smoke profile has them) adds one row per run:
# its trained numbers against the reference, within the stated tolerance. A trained number differs slightly
# from one machine to another, so the notebook checks (`make test`) hide the measured values when they compare
# this table with the committed one: a difference there means a claim stopped holding or a number moved beyond
# its tolerance.

# %%
# NBVAL_CHECK_OUTPUT
nb.verdicts("02_bias_in_distillation", profile, claims, table, nb.bias_effect(table))
