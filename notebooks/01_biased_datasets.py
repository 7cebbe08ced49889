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
# # 01 · The biased datasets
#
# Both papers start from a training set in which a nuisance attribute predicts the label:
#
# * **paper A** (bias in dataset distillation) ties each class to a colour (CMNIST), a background
#   texture (BG-FMNIST) or a corruption type (Corrupted CIFAR-10). A fraction `conflict_ratio` of the
#   training images (0.5%–5% in the paper) breaks the rule: they are *bias-conflicting*.
# * **paper B** (FairDD) gives every class a *majority* protected group holding `majority_ratio` of the class
#   (90% by default); the other groups share the rest.
#
# Test splits are balanced over (class, attribute), so a model that learnt the shortcut fails on most of them.
# This notebook shows every preset the way a model sees it, and how the two ratios shape the data.
#
# **Our choices.** Paper A does not publish how it builds BG-FMNIST; ours puts one of ten coloured stripe
# textures behind each garment (the texture's colour and angle name the background). The corruption types of
# the corruption-bias preset, one per class, are listed in `paperlib/data/corruptions.py` (`CORRUPTIONS`).

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper: picks the datasets in params/experiments/ and the figures/<profile>/ folder
datasets = None  # None: the datasets of params/experiments/01_biased_datasets.yaml at this profile
ratio_sweep = None  # None: from the same file
per_class = 8  # sample-grid columns

# %%
from paperlib import notebook as nb
from paperlib.report import plots

figures = nb.setup(profile)
datasets, ratio_sweep = nb.parameters_or_file(profile, "01_biased_datasets", datasets=datasets, ratio_sweep=ratio_sweep)
built, overview = nb.build_datasets(datasets)

# %% [markdown]
# ## Every preset at a glance
# One row per preset: its source images, the kind of bias, the split sizes and how much of each split
# follows the bias. Presets whose files are not on this machine say so (see the README for where to put them).
# `protocol` says whose construction a preset uses: `fairdd` rebuilds the images of the official FairDD code,
# which paper B's numbers measure (its palette, 32 px, its split rule and its normalisation); `companion` is
# this companion's own construction (its own palette and exact ratios, normalised by the training split's
# channel statistics). Paper A's presets have only the companion's construction. `name` is the row's name in
# the experiment file and `preset` the dataset it builds: two rows can build one preset in two ways
# (`corrupted_fmnist`, `cfmnist_bg_companion`: the next section says how).

# %%
# NBVAL_CHECK_OUTPUT
overview

# %% [markdown]
# ## What the bias looks like
# Each grid row is one class; a **red-and-white frame** marks a bias-conflicting (minority-group) image.
# Beside it, the number of training images per (class, attribute) group on a log scale: the bright diagonal is
# the bias, the dim cells are the few images that contradict it (numbered attributes, such as the ten colours or
# backgrounds, are shown by number, their kind named on the axis).
#
# Two constructions of C-FMNIST (BG) appear: `cfmnist_bg` (`protocol=fairdd`, the preset's default) is paper
# B's dataset as the official FairDD code builds it, whose uint8 wrap-around leaves only pure-black pixels
# coloured and garbles the garment (the images paper B's C-FMNIST (BG) numbers measure);
# `cfmnist_bg_companion` (`protocol=companion`) is the companion's clean construction: the garment's silhouette
# black, the rest coloured (docs/design.md, "Protocols"). `corrupted_fmnist` is the corruption-bias preset
# (`corrupted_cifar10`) built on Fashion-MNIST: CIFAR-10 cannot be downloaded on the machine this companion was
# built on, and the construction, one corruption type per class, is the same.

# %%
import matplotlib.pyplot as plt

for name, dataset in built.items():
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    plots.plot_sample_grid(dataset, per_class=per_class, ax=left, title=f"{name}: rows = classes, framed = conflicting")
    plots.plot_group_counts(dataset.info.group_counts["train"], dataset.info.attribute_names, ax=right,
                            title=f"{name}: training images per group")
    nb.save(left, figures, f"01_{name}")
    plt.show()

# %% [markdown]
# ## How the ratios shape the data
# The conflict ratio sets how many training images contradict the bias; the test split stays balanced
# (`test aligned %` stays at one in ten). At 1% a class of ~6,000 images keeps only ~60 counter-examples, spread
# over nine other colours. Paper B's majority ratio works the other way round: the minority groups share what
# the majority leaves, so `cmnist_fg` at 99% is as biased as `cmnist` at 1%. The fewest and most conflicting
# images per class are the extremes over the ten classes, whose sizes differ (MNIST: 5,421 to 6,742 training
# images).

# %%
sweep, sweep_table = nb.ratio_sweep(ratio_sweep)

# %%
# NBVAL_CHECK_OUTPUT
sweep_table

# %%
ax = plots.plot_conflicting_counts(sweep)
nb.save(ax, figures, "01_conflicting_per_class", pdf=True);
