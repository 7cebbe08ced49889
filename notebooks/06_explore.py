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

# %% [markdown] papermill={"duration": 0.001607, "end_time": "2026-11-23T12:17:54.347830+00:00", "exception": false, "start_time": "2026-11-23T12:17:54.346223+00:00", "status": "completed"}
# # 06 · Explore the bias ratio
#
# Drag the **conflict ratio** and **IPC** sliders, pick a dataset, a method (random real subset, DM, DC) and
# the target of the matching loss (vanilla, paper A's KDE reweighting, paper B's FairDD). The left image is
# the biased training data at that ratio (red frames: bias-conflicting images); the right one is what the
# model is trained on; below, its test metrics.
#
# Points computed by notebooks 02–05 answer at once. A point nobody computed yet offers **compute live**: a
# small, fast run (the `live` settings of the parameter file) with a progress bar, stored for next time.
# For FairDD presets the slider is the minority share, 1 − majority ratio.

# %% papermill={"duration": 0.008524, "end_time": "2026-11-23T12:17:54.357682+00:00", "exception": false, "start_time": "2026-11-23T12:17:54.349158+00:00", "status": "completed"} tags=["parameters"]
profile = "quick"  # smoke | quick | paper
explorer = None  # None: the explorer settings of params/<profile>/06_explore.yaml

# %% papermill={"duration": 0.006838, "end_time": "2026-11-23T12:17:54.365811+00:00", "exception": false, "start_time": "2026-11-23T12:17:54.358973+00:00", "status": "completed"} tags=["injected-parameters"]
# Parameters
profile = "quick"
explorer = {"datasets": {"CMNIST (colour)": {"dataset": "cmnist"}, "BG-FMNIST (background)": {"dataset": "bg_fmnist"}, "Corrupted FMNIST (corruption)": {"dataset": "corrupted_cifar10", "source": "fashion_mnist"}, "C-MNIST FG (FairDD)": {"dataset": "cmnist_fg"}, "C-FMNIST FG (FairDD)": {"dataset": "cfmnist_fg"}}, "ratios": [0.01, 0.05, 0.1, 0.2], "ipcs": [1, 10, 50], "methods": ["random", "dm", "dc"], "method_settings": {"dm": {"by_ipc": {"1": {"lr_img": 2}, "50": {"lr_img": 100, "eval_epochs": 100}}}, "dc": {"iterations": 5, "lr_img": 2, "outer_loop": 5, "inner_loop": 5}}, "live": {"iterations": 20, "batch_real": 64, "eval_epochs": 100, "num_eval": 1}, "live_by_method": {"dc": {"iterations": 2}}}


# %% papermill={"duration": 3.119594, "end_time": "2026-11-23T12:17:57.486867+00:00", "exception": false, "start_time": "2026-11-23T12:17:54.367273+00:00", "status": "completed"}
from paperlib import notebook as nb
from paperlib.explore import Explorer, ExplorerModel
from paperlib.suite import profile_defaults

figures = nb.setup(profile)
explorer = explorer or nb.notebook_parameters(profile, "06_explore")["explorer"]
app = Explorer(profile_defaults(profile), explorer)
app.widget

# %% [markdown] papermill={"duration": 0.00124, "end_time": "2026-11-23T12:17:57.489685+00:00", "exception": false, "start_time": "2026-11-23T12:17:57.488445+00:00", "status": "completed"}
# A stored notebook cannot keep live widgets, so here is the explorer's current view as a static snapshot
# (CMNIST, DM, vanilla, at the middle ratio). In JupyterLab, the controls above redraw it.

# %% papermill={"duration": 0.009696, "end_time": "2026-11-23T12:17:57.500490+00:00", "exception": false, "start_time": "2026-11-23T12:17:57.490794+00:00", "status": "completed"}
from IPython.display import HTML

HTML(app.snapshot_html())

# %% [markdown] papermill={"duration": 0.001516, "end_time": "2026-11-23T12:17:57.505033+00:00", "exception": false, "start_time": "2026-11-23T12:17:57.503517+00:00", "status": "completed"}
# ## Which points are stored
# The explorer's grid of choices and whether each point is answered from a stored run (`profile`), from an
# earlier live run (`live`), or not yet (`none`).

# %% papermill={"duration": 0.179363, "end_time": "2026-11-23T12:17:57.685822+00:00", "exception": false, "start_time": "2026-11-23T12:17:57.506459+00:00", "status": "completed"}
# NBVAL_CHECK_OUTPUT
nb.explorer_coverage(ExplorerModel(profile_defaults(profile), explorer))
