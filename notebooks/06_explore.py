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
# # 06 · Explore the bias ratio
#
# Drag the **conflict ratio** and **IPC** sliders, pick a dataset, a method (random real subset, DM, DC) and
# the target of the matching loss (vanilla, paper A's KDE reweighting, paper B's FairDD, COBRA's barycenter).
# The left image is the biased training data at that ratio (red-and-white frames: bias-conflicting images);
# the right one is what the model is trained on; below, its test metrics (in %). The static snapshot further
# down stacks the two images, training data on top.
#
# The explorer offers its own datasets and choices (params/experiments/06_explore.yaml). Where one of its points
# is a run that notebooks 02–07 computed at the profile's settings (this one computes the ratio sweeps drawn
# below), it answers at once, from your cache or from the results store that ships with the repository
# (`results/`), without the data; the coverage table below lists those points, and a line under the sliders
# says where they answer at once from the point shown. Runs of those notebooks outside the explorer's choices (other datasets, such as C-MNIST
# BG, or other settings, such as a smaller step or stratified batches) are not among its points.
#
# A point nobody computed yet says what would fill it: `make reproduce` for the profile's runs, or **compute
# live**, a small run (the `live` settings of params/experiments/06_explore.yaml) with progress bars and an
# estimate of its time, stored for next time. The
# controls are locked while it runs; **stop** (or the kernel's interrupt) cancels it. For FairDD presets the
# slider is the minority share, 1 − majority ratio.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
explorer = None  # None: the explorer settings of params/experiments/06_explore.yaml at this profile
suite = None  # None: the ratio sweeps of the same file (along the slider), on params/<profile>/defaults.yaml
claims = None  # None: the profile's claims in the same file (see paperlib.report.checks)

# %%
from paperlib import notebook as nb
from paperlib.report import plots
from paperlib.report.explore import Explorer
from paperlib.report.explorer_model import ExplorerModel

figures = nb.setup(profile)
explorer = nb.parameters_or_file(profile, "06_explore", explorer=explorer)
sweeps = nb.run_all(nb.suite_specs(profile, suite, "06_explore"))  # stored first, so the explorer answers along them
nb.save_table(sweeps, figures, "06_explore")
app = Explorer(nb.profile_defaults(profile), explorer, profile)
app

# %% [markdown]
# A stored notebook cannot keep live widgets, so here is the explorer's opening view as a static snapshot
# (in the quick profile: CMNIST with 5% conflicting, DM, vanilla, IPC 10). In JupyterLab, the controls above
# redraw it.

# %%
from IPython.display import HTML

HTML(app.snapshot_html())

# %% [markdown]
# ## Along the slider, without a kernel
# What dragging the ratio slider shows, drawn from the runs this notebook stores for it (DM at IPC 10, one
# distillation and one evaluation model per point): on CMNIST, vanilla DM's accuracy on bias-conflicting images
# against KDE reweighting's; on paper B's C-MNIST (FG), vanilla DM's fairness gap DEO_M against FairDD's (lower is
# fairer), along the minority share, 1 − majority ratio.
#
# What the quick profile shows (its KDE sweep starts at 5%: a 1% run would train one more encoder): vanilla DM
# stays biased at every ratio. Its conflicting accuracy is 13–16% up to 10%
# conflicting and reaches only 33% at 20%, and its DEO_M is 100 at every minority share. KDE lifts the
# conflicting accuracy to about 82% at 5 and 10%, then falls to 56% at 20%: with four times as many conflicting
# images their regions of the embedding are denser and weigh less (notebook 05). FairDD's DEO_M is 98 at a 1%
# minority share, where each minority group of a class has six or seven training images, and 27–54 from 5% on:
# one model per point, whose DEO_M has a standard deviation of about 8 points with its seed alone (notebook 05),
# so two points differ by about 11 from that alone; the 5–20% values, 28 points apart at most, are not shown to
# be a trend.

# %%
fig, axes = plots.subplots(1, 2, figsize=(11, 3.4))
plots.plot_ratio_curves(sweeps[sweeps["experiment"] == "cmnist"], "acc_conflicting", ax=axes[0],
                        title="CMNIST: bias-conflicting accuracy", hue="distilled_set")
plots.plot_ratio_curves(sweeps[sweeps["experiment"] == "cmnist_fg"], "deo_m", ax=axes[1],
                        title="C-MNIST (FG): DEO_M", hue="distilled_set")
nb.save(axes[0], figures, "06_ratio_sweeps", pdf=True);

# %% [markdown]
# ## Which points are stored
# The explorer's choices that have a stored run, and whether each point is answered from a stored run
# (`profile`), from an earlier live run (`live`), or not yet (`·`); the line above the table counts the rows
# and columns left out because none of their points is stored. Each stored point's data view and distilled
# images are stored too, so the results store answers it without the data.

# %%
# NBVAL_CHECK_OUTPUT
nb.explorer_coverage(ExplorerModel(nb.profile_defaults(profile), explorer), views=True, stored_only=True)

# %% [markdown]
# ## What this run checks
# This notebook's claims along its sweeps (the experiment file's `claims`), each a comparison with a margin, and,
# in the smoke profile, its runs against their reference numbers. Notebook 02's last section says how to read the
# table.

# %%
# NBVAL_CHECK_OUTPUT
nb.verdicts("06_explore", profile, claims, sweeps)
