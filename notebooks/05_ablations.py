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
# # 05 · Ablations
#
# What each design choice contributes: the KDE's bandwidth, weighting and encoder; FairDD's sampling mode and
# initialisation; the number of images per class; the bias ratio; the evaluation architecture; and, from a
# one-line identity (the gradient of FairDD's sum of squared distances to the group means is |A| times that of
# the distance to their barycenter, COBRA's target, with |A| the number of groups in the real batch), why DM +
# FairDD and DM on the barycenter head for the same matching point with steps of different sizes.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
suite = None  # None: the runs of params/experiments/05_ablations.yaml at this profile, on params/<profile>/defaults.yaml
claims = None  # None: the profile's claims in the same file (see paperlib.report.checks)
kde_dataset = None  # None: the KDE ablation's dataset settings from the same file
kde_variants = None  # None: the KDE variants (bandwidth, weighting, encoder) from the same file
theorem_dataset = None  # None: the dataset of the identity check (FairDD vs barycenter gradients) from the same file

# %%
from paperlib import notebook as nb
from paperlib.report import plots

figures = nb.setup(profile)
kde_dataset, kde_variants, theorem_dataset = nb.parameters_or_file(
    profile, "05_ablations", kde_dataset=kde_dataset, kde_variants=kde_variants, theorem_dataset=theorem_dataset)
specs = nb.suite_specs(profile, suite, "05_ablations")
table = nb.run_all(specs)
nb.save_table(table, figures, "05_ablations");

# %% [markdown]
# ## KDE: bandwidth, weighting and encoder
# The share of each class's weight that lands on its bias-conflicting images (they are 5% of the samples).
# The median-distance bandwidth lets the density separate the sparse conflicting images; Scott's and
# Silverman's rules, made for low dimensions, shrink the kernel in the 128-d embedding until every point is
# its own cluster, and the weights fall back towards uniform. A softmax over the standardised log density
# with a low temperature (tau 0.3) concentrates the weight further, on fewer images (small effective
# sample size). Without the SupCon encoder the density does not single out the conflicting images either: with
# a random network's features their share of the weight stays near their 5% share of the samples, with raw
# pixels it is no higher than under Scott's rule (quick profile: 5.9% and 10.9%, against 11.4% for Scott's
# and 91% for the default). Both are needed: the SupCon embedding and the median bandwidth. Keep the encoder
# but change the bandwidth, or keep the bandwidth but change the encoder, and the weight falls back to about
# 6–11%.

# %%
kde = nb.kde_ablation(kde_dataset, kde_variants, profile)
kde

# %%
ax = plots.plot_bars(kde, "variant", "conflicting % of weight", title="KDE weight on conflicting samples")
nb.save(ax, figures, "05_kde_variants");

# %% [markdown]
# ## FairDD: sampling mode and initialisation
# `fairdd` is the reference (uniform real batches; a group absent from a batch is skipped); `fairdd_stratified`
# puts every present group in every batch; `fairdd_noise_init` starts from noise instead of real images. The
# last two rows are FairDD's neighbours: `barycenter` matches the mean of the group means in each real batch
# (COBRA's target; the identity below relates it to FairDD); `group_balanced_weights` is vanilla DM with fixed
# sample weights 1 / n(class, group), the barycenter only on average over batches: in one batch a group weighs
# in proportion to how many of its images were drawn, which for a minority group of a few dozen images is
# often none or one. `fairdd_small_step` (quick profile) is FairDD at the image learning rate divided by the
# mean number of groups present in a class's batch (20 / 8 = 2.5; see the identity below).
#
# Stratified batches match every group in every batch, instead of only those a uniform draw happens to
# contain; each group gets at least 8 of a class's 128 images (`stratified_min`, 16 by default, lowered because
# 10 groups of 16 would not fit the batch). In the quick profile they leave accuracy where it was and lower
# FairDD's DEO_M from 54.5 to 31.1, with one model per row: 23 points, at the edge of what one model's spread
# explains (the cross-architecture rows below measure it: the ConvNet's DEO_M is 81.6 ± 7.7 over five models,
# so two single models differ by about 11 points from that alone, and by twice that about one time in twenty).
# The longer run with three models per row (`figures/quick/kde_fairdd.md`) finds the two DEO_M within each
# other's spread, so read it as no measured effect. Starting from noise costs the most (63.6%, DEO_M 92.9): in
# 100 iterations, images started from noise get less far than images started from real ones.

# %%
nb.metrics_view(table[table["experiment"] == "fairdd_modes"], keys=("acc", "deo_m", "deo_a"))

# %% [markdown]
# ## The identity: DM + FairDD is DM on the barycenter of the group means, times the number of groups present
# For DM the FairDD loss $\sum_{a \in A} \lVert \mu_a - s \rVert^2$, with $A$ the groups present in the class's
# real batch, has the gradient $|A|\,\nabla \lVert \tfrac{1}{|A|}\sum_a \mu_a - s \rVert^2$ with respect to the
# synthetic mean $s$. Below, the two gradients on real batches, summarised by the number of groups present
# (`class × batch pairs` counts the classes of the sampled batches that had that many): their cosine is 1 and
# their norm ratio equals the number of groups present, which changes from class to class and from batch to
# batch. So the barycenter run above heads for the same matching point as FairDD with a step |A| times
# smaller, and |A| is not a constant. At an equal image learning rate it moves less per iteration, and moving
# less is not doing worse: in the quick profile the barycenter run beats FairDD (86.7% against 75.7%, DEO_M
# 35.6 against 54.5), and so does the group-balanced weighting (85.0%, 45.5). FairDD itself, run at the image
# learning rate divided by the mean number of groups present (20 / 8 = 2.5, `fairdd_small_step`), reaches the
# barycenter's accuracy (86.7%) and the lowest DEO_M of the table (26.7): the quick image learning rate, tuned
# on the companion's normalisation, is too large for FairDD's summed loss, and the step size, not the target,
# made the difference (README and notebook 07 say the same; one model per run).

# %%
# NBVAL_CHECK_OUTPUT
gradients = nb.theorem_check(theorem_dataset, profile)
nb.theorem_summary(gradients)

# %% [markdown]
# ## Images per class
# More synthetic images give the vanilla set more room, but it still spends it on the majority colour; the
# KDE target helps at every IPC this profile runs.

# %%
ipc = table[table["experiment"] == "ipc"]
ax = plots.plot_against(ipc, "ipc", "acc", hue="distilled_set", title="CMNIST 5%: accuracy vs IPC")
nb.save(ax, figures, "05_ipc");

# %% [markdown]
# ## The share of bias-conflicting images
# Vanilla DM against DM + KDE as the conflict ratio changes (paper A's knob; paper B's "bias ratio" is the
# majority ratio, the other side of the same split). In the quick profile DM + KDE
# falls from 82.7% at 5% conflicting to 60.2% at 20% (still above vanilla's 39.9%), and its set is biased
# again there: 98.3% on aligned against 56.0% on conflicting images. At 5% aligned and conflicting are about
# equal: 80.4% / 82.9% with one model, 82.8 ± 1.5% / 82.7 ± 1.2% over the five ConvNet models of the
# cross-architecture table below (same setting). The weights below show what changed: at 20% the KDE
# puts 63% of a class's weight on the conflicting images (48% in the lowest class) against 91% at 5%; four
# times as many conflicting images make their regions of the embedding denser, so each weighs less.

# %%
nb.metrics_view(table[table["experiment"].isin(["ipc", "ratio"])], extra=("ratio", "ipc"))

# %%
nb.weight_shares([spec for spec in specs if spec.experiment == "ratio"])

# %%
ratio = table[table["experiment"] == "ratio"]
ax = plots.plot_ratio_curves(ratio, "acc", title="CMNIST: accuracy vs conflict ratio", hue="distilled_set")
nb.save(ax, figures, "05_ratio", pdf=True);

# %% [markdown]
# The papers' numbers for the settings above that they report (their runs are far longer than ours). A run off
# their protocol (stratified batches, a noise start, another evaluation architecture) has no counterpart here.
# Paper A reports accuracy only, so its rows' DEO columns show "–"; *first evaluation schedule*: see
# notebook 03. `fairdd_small_step` stands beside paper B's FairDD value although its image step (2.5) is off
# the paper's, as this profile's step of 20 already is.

# %%
nb.paper_vs_companion(table, profile)

# %% [markdown]
# ## Cross-architecture evaluation
# The vanilla DM set and the DM + KDE set, both distilled through the ConvNet, each used to train evaluation
# models of other architectures. What to look for: KDE's gain over vanilla carries over to every network that
# trains on the set, though it shrinks off the ConvNet that distilled it (quick profile: 61 points on the
# ConvNet, 39-44 on the others; on the KDE set the other networks reach 12-14 points less, on the vanilla set
# 3-10 points more). A LeNet on 100 images varies a lot with its seed: read its error bar (the std over the
# row's five models in the quick profile). The DEO_M column measures how much one model's fairness gap moves
# with its seed alone (the same set, five models): the other notebooks' single-model DEO_M read against it.

# %%
cross_architecture = table[table["experiment"] == "cross_architecture"]
nb.metrics_view(cross_architecture, keys=("acc", "acc_aligned", "acc_conflicting", "deo_m"), extra=("eval_model",))

# %%
sets = cross_architecture.sort_values("distilled_set", kind="stable")  # the DM set's bars left of the KDE set's
ax = plots.plot_grouped_bars(sets, "eval_model", "distilled_set", title="CMNIST 5%, IPC 10: each set on three networks")
nb.save(ax, figures, "05_cross_architecture", pdf=True);

# %% [markdown]
# ## What this run checks
# This notebook's claims (the experiment file's `claims`), each a comparison with a margin, and, in the smoke
# profile, its runs against their reference numbers. Notebook 02's last section says how to read the table.

# %%
# NBVAL_CHECK_OUTPUT
nb.verdicts("05_ablations", profile, claims, table, kde)
