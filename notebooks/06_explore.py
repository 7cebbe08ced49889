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
# is a run that notebooks 02–05 or 07 computed at the profile's settings, it answers at once, from your cache or
# from the results store that ships with the repository (`results/`), without the data; the table at the end
# lists those points. Runs of those notebooks outside the explorer's choices (other datasets, such as C-MNIST
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

# %%
from paperlib import notebook as nb
from paperlib.report.explore import Explorer
from paperlib.report.explorer_model import ExplorerModel

figures = nb.setup(profile)
explorer = nb.parameters_or_file(profile, "06_explore", explorer=explorer)
app = Explorer(nb.profile_defaults(profile), explorer, profile)
app

# %% [markdown]
# A stored notebook cannot keep live widgets, so here is the explorer's opening view as a static snapshot
# (paper A's headline setting: CMNIST with 5% conflicting, DM, vanilla, IPC 50). In JupyterLab, the controls
# above redraw it.

# %%
from IPython.display import HTML

HTML(app.snapshot_html())

# %% [markdown]
# ## Which points are stored
# The explorer's choices that have a stored run, and whether each point is answered from a stored run
# (`profile`), from an earlier live run (`live`), or not yet (`·`); the line above the table counts the rows
# and columns left out because none of their points is stored. Each stored point's data view and distilled
# images are stored too, so the results store answers it without the data.

# %%
# NBVAL_CHECK_OUTPUT
nb.explorer_coverage(ExplorerModel(nb.profile_defaults(profile), explorer), views=True, stored_only=True)
