# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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

# %% [markdown] papermill={"duration": 0.001751, "end_time": "2026-11-23T12:14:24.354854+00:00", "exception": false, "start_time": "2026-11-23T12:14:24.353103+00:00", "status": "completed"}
# # 01 · The biased datasets
#
# Both papers start from a training set in which a nuisance attribute predicts the label:
#
# * **paper A** (bias in dataset distillation) ties each digit class to a colour (CMNIST), a background
#   texture (BG-FMNIST) or a corruption type (Corrupted CIFAR-10). A fraction `conflict_ratio` of the
#   training images (0.5%–5% in the paper) breaks the rule: they are *bias-conflicting*.
# * **paper B** (FairDD) gives every class a *majority* protected group holding `majority_ratio` of the class
#   (90% by default); the other groups share the rest.
#
# Test splits are balanced over (class, attribute), so a model that learnt the shortcut fails on most of them.
# This notebook shows every preset the way a model sees it, and how the two ratios shape the data.

# %% papermill={"duration": 0.009381, "end_time": "2026-11-23T12:14:24.365920+00:00", "exception": false, "start_time": "2026-11-23T12:14:24.356539+00:00", "status": "completed"} tags=["parameters"]
profile = "quick"  # smoke | quick | paper: which params/<profile>/ files and figures/<profile>/ folder
datasets = None  # None: the datasets of params/<profile>/01_biased_datasets.yaml
ratio_sweep = None  # None: from the same file
per_class = 8  # sample-grid columns

# %% papermill={"duration": 0.008349, "end_time": "2026-11-23T12:14:24.376357+00:00", "exception": false, "start_time": "2026-11-23T12:14:24.368008+00:00", "status": "completed"} tags=["injected-parameters"]
# Parameters
profile = "quick"
datasets = {"cmnist": {"dataset": "cmnist", "conflict_ratio": 0.05}, "bg_fmnist": {"dataset": "bg_fmnist", "conflict_ratio": 0.05}, "corrupted_fmnist": {"dataset": "corrupted_cifar10", "source": "fashion_mnist", "conflict_ratio": 0.05}, "cmnist_fg": {"dataset": "cmnist_fg", "majority_ratio": 0.9}, "cmnist_bg": {"dataset": "cmnist_bg", "majority_ratio": 0.9}, "cfmnist_fg": {"dataset": "cfmnist_fg", "majority_ratio": 0.9}, "cfmnist_bg": {"dataset": "cfmnist_bg", "majority_ratio": 0.9}, "corrupted_cifar10": {"dataset": "corrupted_cifar10", "conflict_ratio": 0.05}, "cifar10_s": {"dataset": "cifar10_s", "majority_ratio": 0.9}, "celeba": {"dataset": "celeba"}, "utkface": {"dataset": "utkface"}, "bffhq": {"dataset": "bffhq"}}
ratio_sweep = [{"dataset": "cmnist", "ratio": "conflict_ratio", "values": [0.01, 0.05, 0.2]}, {"dataset": "cmnist_fg", "ratio": "majority_ratio", "values": [0.5, 0.9, 0.99]}]


# %% papermill={"duration": 3.879227, "end_time": "2026-11-23T12:14:28.257237+00:00", "exception": false, "start_time": "2026-11-23T12:14:24.378010+00:00", "status": "completed"}
from paperlib import notebook as nb
from paperlib import plots

figures = nb.setup(profile)
if datasets is None or ratio_sweep is None:
    parameters = nb.notebook_parameters(profile, "01_biased_datasets")
    datasets = datasets or parameters["datasets"]
    ratio_sweep = ratio_sweep or parameters["ratio_sweep"]
built, overview = nb.build_datasets(datasets)

# %% [markdown] papermill={"duration": 0.001685, "end_time": "2026-11-23T12:14:28.261802+00:00", "exception": false, "start_time": "2026-11-23T12:14:28.260117+00:00", "status": "completed"}
# ## Every preset at a glance
# One row per preset: its source images, the kind of bias, the split sizes and how much of each split
# follows the bias. Presets whose files are not on this machine say so (see the README for where to put them).

# %% papermill={"duration": 0.015716, "end_time": "2026-11-23T12:14:28.279137+00:00", "exception": false, "start_time": "2026-11-23T12:14:28.263421+00:00", "status": "completed"}
# NBVAL_CHECK_OUTPUT
overview

# %% [markdown] papermill={"duration": 0.001751, "end_time": "2026-11-23T12:14:28.283228+00:00", "exception": false, "start_time": "2026-11-23T12:14:28.281477+00:00", "status": "completed"}
# ## What the bias looks like
# Each grid row is one class; a **red frame** marks a bias-conflicting (minority-group) image. Beside it,
# the number of training images per (class, attribute) group on a log scale: the bright diagonal is the
# bias, the dim cells are the few images that contradict it.

# %% papermill={"duration": 6.084825, "end_time": "2026-11-23T12:14:34.369540+00:00", "exception": false, "start_time": "2026-11-23T12:14:28.284715+00:00", "status": "completed"}
import matplotlib.pyplot as plt

for name, dataset in built.items():
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    plots.plot_sample_grid(dataset, per_class=per_class, ax=left, title=f"{name}: rows = classes, red = conflicting")
    plots.plot_group_counts(dataset.info.group_counts["train"], dataset.info.attribute_names, ax=right,
                            title=f"{name}: training images per group")
    nb.save(left, figures, f"01_{name}")
    plt.show()

# %% [markdown] papermill={"duration": 0.00614, "end_time": "2026-11-23T12:14:34.383291+00:00", "exception": false, "start_time": "2026-11-23T12:14:34.377151+00:00", "status": "completed"}
# ## How the ratios shape the data
# The conflict ratio sets how many training images contradict the bias; the test split stays balanced.
# At 1% a class of ~6,000 images keeps only ~60 counter-examples, spread over nine other colours.

# %% papermill={"duration": 2.604073, "end_time": "2026-11-23T12:14:36.994316+00:00", "exception": false, "start_time": "2026-11-23T12:14:34.390243+00:00", "status": "completed"}
sweep, sweep_table = nb.ratio_sweep(ratio_sweep)

# %% papermill={"duration": 0.016525, "end_time": "2026-11-23T12:14:37.016872+00:00", "exception": false, "start_time": "2026-11-23T12:14:37.000347+00:00", "status": "completed"}
# NBVAL_CHECK_OUTPUT
sweep_table

# %% papermill={"duration": 1.036113, "end_time": "2026-11-23T12:14:38.058976+00:00", "exception": false, "start_time": "2026-11-23T12:14:37.022863+00:00", "status": "completed"}
ax = plots.plot_conflicting_counts(sweep)
nb.save(ax, figures, "01_conflicting_per_class", pdf=True);
