"""The bias explorer of notebook 06, its ipywidgets front end (the points and their runs:
:mod:`paperlib.report.explorer_model`): pick a dataset, bias ratio, IPC, method and target; see the data, the
distilled images and the metrics.

A point is answered from the stored run at the profile's settings when there is one (the cache, else the
results store shipped with the repository: well under a second, without the data). Otherwise the reader can
compute it live at a small scale (the ``live`` overrides of ``params/experiments/06_explore.yaml``), in a
background thread that the stop button or the kernel's interrupt stops; that run is stored too, so it answers
at once the next time.
"""

from __future__ import annotations

import base64
import contextvars
import ctypes
import html
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from paperlib.core.errors import DataNotFound, PaperlibError
from paperlib.core.images import fit_width
from paperlib.core.keys import relevant_fields
from paperlib.core.runtime import PROGRESS_DISPLAY
from paperlib.distill.methods import METHODS
from paperlib.report.explorer_model import ExplorerModel, Point
from paperlib.report.metric_names import HEADLINE_METRICS, axis_label
from paperlib.report.reference import reported
from paperlib.report.formatting import as_published, mean_std, percent


REPRODUCE_HINT = "make reproduce PROFILE={profile}"
# Wider images are shrunk before they are inlined: an IPC-50 grid at the stored 2x scale (3000 px and 0.8 MB at
# 28 px, 3400 px at 32 px) comes back to its native width, wider than the explorer's column still.
MAX_IMAGE_WIDTH = 1800


def metrics_html(record: dict, scale: str, live: Mapping[str, Any], paper: dict | None) -> str:
    """A small HTML table of the record's metrics, saying where they come from (and the paper's, labelled)."""
    metrics = record["metrics"]
    models = record["num_eval"] * record.get("num_distill", 1)  # num_eval models on each training set
    ours_at = "stored run" if scale == "profile" else "live, small scale"  # in the header: a live number is no paper's
    header = f"<tr><th></th><th>this companion ({ours_at})</th>" + ("<th>paper</th>" if paper else "") + "</tr>"
    rows = []
    for key in HEADLINE_METRICS:  # named by their axis labels
        ours = mean_std(metrics[key], metrics.get(key + "_std") if models > 1 else None)
        theirs = f"<td>{as_published(paper.get(key))}</td>" if paper else ""
        rows.append(f"<tr><td>{axis_label(key)}</td><td>{ours}</td>{theirs}</tr>")
    where = ("stored run at this profile's settings" if scale == "profile" else
             "computed live at a small scale: " + (", ".join(f"{k}={v}" for k, v in live.items()) or "defaults"))
    note = f"<p><small>{html.escape(where)}; {models} evaluation model(s)"
    if paper:
        note += f"; paper: {html.escape(paper['source'])} (its own, longer setting)"
    return f"<table>{header}{''.join(rows)}</table>{note}</small></p>"


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters): one line for the status."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"


class LiveRunStopped(BaseException):
    """Raised inside a live run's thread to stop it (a ``BaseException``, so no ``except Exception`` swallows it)."""


def _image_html(png: bytes | None, empty: str) -> str:
    """An inline ``<img>`` that keeps its aspect ratio inside the explorer's column, or the ``empty`` message."""
    if not png:
        return f'<p class="explorer-empty">{empty}</p>'
    try:
        png = fit_width(bytes(png), MAX_IMAGE_WIDTH)
    except OSError as err:  # PIL's UnidentifiedImageError among them: a damaged stored file
        return f'<p class="explorer-empty">the stored image cannot be read ({html.escape(str(err))})</p>'
    source = base64.b64encode(png).decode()
    return (f'<img src="data:image/png;base64,{source}" style="max-width:100%; max-height:420px; width:auto; '
            f'height:auto; image-rendering:pixelated"/>')


class Explorer:
    """The ipywidgets front end of :class:`ExplorerModel`; ``display(Explorer(...))`` in a notebook.

    ``profile`` only names the command that fills the empty points. A live run works in a background thread, so
    the stop button stays responsive; every control is disabled until it ends, fails or is stopped.
    """

    def __init__(self, defaults: Mapping[str, Any], settings: Mapping[str, Any], profile: str = "quick") -> None:
        import ipywidgets as w

        self.model = ExplorerModel(defaults, settings)
        self.profile = profile
        self._worker: threading.Thread | None = None  # the live run's thread, until it has finished showing
        self._computing = False  # while the live run computes: the controls wait for its end
        # stop() raises LiveRunStopped in the worker only while it computes, decided under this lock: a stop that came
        # later would report a stored run as stopped, or end the thread with the controls disabled
        self._stop_lock = threading.Lock()
        self._stoppable = self._stop_sent = False
        s, start = settings, self.model.start_point()
        self.dataset = w.Dropdown(options=list(s["datasets"]), value=start.dataset, description="dataset")
        self.ratio = w.SelectionSlider(options=[(percent(float(r)), float(r)) for r in s["ratios"]], value=start.ratio,
                                       description=self.model.ratio_label(start.dataset), continuous_update=False,
                                       style={"description_width": "initial"})
        self.ipc = w.SelectionSlider(options=[int(i) for i in s["ipcs"]], value=start.ipc, description="IPC",
                                     continuous_update=False)
        self.method = w.Dropdown(options=list(s["methods"]), value=start.method, description="method")
        self.target = w.Dropdown(options=list(s["approaches"]), value=start.target, description="target")
        self._chosen_target = start.target  # kept while a random subset greys the target out
        self._setting_target = False
        self.compute_button = w.Button(description="compute live", icon="play", disabled=True,
                                       layout=w.Layout(min_width="130px"))
        self.stop_button = w.Button(description="stop", icon="stop", disabled=True, layout=w.Layout(min_width="80px"))
        self.status = w.HTML()
        self.stored_along = w.HTML()  # where the sliders answer at once from here
        self.data_view = w.HTML()
        self.training_view = w.HTML()
        self.metrics = w.HTML()
        self.progress = w.VBox()
        self.controls = (self.dataset, self.ratio, self.ipc, self.method, self.target)
        for control, name in zip(self.controls, ("dataset", "ratio", "ipc", "method", "target")):
            control.add_class(f"explorer-{name}")
            control.observe(lambda _: self.refresh(), names="value")
        for widget, name in ((self.compute_button, "compute"), (self.stop_button, "stop"), (self.status, "status"),
                             (self.stored_along, "stored-along"), (self.data_view, "data"),
                             (self.training_view, "training"), (self.metrics, "metrics"), (self.progress, "progress")):
            widget.add_class(f"explorer-{name}")
        self.compute_button.on_click(lambda _: self.compute())
        self.stop_button.on_click(lambda _: self.stop())
        column = w.Layout(width="50%")
        images = w.HBox([w.VBox([w.HTML("<b>biased training data</b> (framed: bias-conflicting)"),
                                 self.data_view], layout=column),
                         w.VBox([w.HTML("<b>training set of the model</b>"), self.training_view], layout=column)])
        self.widget = w.VBox([w.HBox([self.dataset, self.method, self.target]), w.HBox([self.ratio, self.ipc]),
                              self.stored_along, w.HBox([self.compute_button, self.stop_button, self.status]),
                              self.progress, images,
                              self.metrics])
        self.widget.add_class("paperlib-explorer")
        self.refresh()

    def _repr_mimebundle_(self, **kwargs) -> dict:
        # A stored notebook has no widget state: show a sentence, not the widget's repr, until the cell runs.
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = "The bias explorer: run this cell (or Run All) to show its controls."
        return bundle

    def snapshot_html(self) -> str:
        """The current view as static HTML (images inlined), for stored notebooks where widgets do not render."""
        point = self.point()
        title = html.escape(f"{point.dataset}, {self.ratio.description} {percent(point.ratio)}, IPC {point.ipc}, "
                            f"{point.method}, {point.target}")
        # one view per row: an IPC-50 set is 50 images wide and would be shrunk beside the 8-column data view
        rows = "".join(f"<tr><th style='text-align:left'>{name}</th></tr><tr><td>{view.value}</td></tr>"
                       for name, view in (("biased training data", self.data_view),
                                          ("training set of the model", self.training_view)))
        return f"<p><b>{title}</b></p><table>{rows}</table>{self.metrics.value or self.status.value}"

    def point(self) -> Point:
        """The point the controls show."""
        target = self.target.value if METHODS[self.method.value].distils else self.model.plain
        return Point(self.dataset.value, float(self.ratio.value), int(self.ipc.value), self.method.value, target)

    def refresh(self) -> bool:
        """Show the current point: its data, and its result when stored, else what would fill it; returns whether
        it was shown (a live run's end reports on its point only then). A point that cannot be shown (a damaged
        stored record, say) clears the views and says why in the status line, so no number of the point before
        stays under the new controls."""
        if self._computing or self._setting_target:
            # the controls are disabled during a live run (a programmatic change waits for its end); a target set
            # by this refresh is shown by this refresh, once
            return False
        try:
            self._refresh()
            return True
        except Exception as err:  # noqa: BLE001 - an observer's exception would go to a log the reader never sees
            for view in (self.data_view, self.training_view, self.metrics, self.stored_along):
                view.value = ""
            self.compute_button.disabled = True
            self.status.value = f"<b>this point cannot be shown: {html.escape(_first_line(err))}</b>"
            return False

    def _refresh(self) -> None:
        distils = METHODS[self.method.value].distils
        if distils and self.target.disabled:
            self._set_target(self._chosen_target, disabled=False)
        elif not distils and not self.target.disabled:
            self._chosen_target = self.target.value
            self._set_target(self.model.plain, disabled=True)
        self.ratio.description = self.model.ratio_label(self.dataset.value)
        point = self.point()
        self._show_data(point)
        record, scale = self.model.stored(point)
        if record is None:
            self._show_empty(point)
        else:
            self.compute_button.disabled = True
            self.status.value = f"<i>{'stored run' if scale == 'profile' else 'stored live run'}</i>"
            self._show(point, record, scale)
        self._show_stored_along(point, stored_here=record is not None)

    def _set_target(self, value: str, disabled: bool) -> None:
        # Assigning target.value calls refresh at once, through its observer: that nested call returns at once.
        self._setting_target = True
        try:
            self.target.disabled = disabled
            self.target.value = value
        finally:
            self._setting_target = False

    def compute(self) -> threading.Thread:
        """Compute the current point at the live scale in a background thread (progress bars below the buttons),
        then show it; returns the thread (``join`` it to wait): the running one while a live run is on, as a click
        queued while the kernel was busy would otherwise start a second run that nothing could stop."""
        if self._worker is not None:
            return self._worker
        point = self.point()
        about = self._time_estimate(point)  # before the controls are disabled: nothing below raises before the thread
        self._computing = True
        for control in (*self.controls, self.compute_button):
            control.disabled = True
        self.stop_button.disabled = False
        self.status.value = f"<i>computing… ({html.escape(about)}; stop, or interrupt the kernel, to cancel)</i>"
        self.progress.children = ()
        context = contextvars.copy_context()
        context.run(PROGRESS_DISPLAY.set, self._add_bar)
        worker = threading.Thread(target=context.run, args=(self._work, point), daemon=True,
                                  name="paperlib-explorer-live-run")
        self._worker = worker
        self._route_interrupts_here()
        worker.start()
        return worker

    def stop(self) -> None:
        """Stop the live run: raise :class:`LiveRunStopped` in its thread (files are written atomically, so nothing
        half-written stays; a distillation resumes from its last checkpoint next time). Once per run, and only
        while it computes: after that its result is being shown, and there is nothing left to stop."""
        # Not waiting for the lock: its holder is the worker beginning or leaving compute() (nothing to stop yet or
        # any more), or this thread sending a stop when the kernel's interrupt came (a second stop would deadlock).
        if not self._stop_lock.acquire(blocking=False):
            return
        try:
            if not self._stoppable:
                return
            self._stoppable, self._stop_sent = False, True
            self.stop_button.disabled = True
            self.status.value = "<i>stopping…</i>"
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._worker.ident),
                                                       ctypes.py_object(LiveRunStopped))
        finally:
            self._stop_lock.release()

    def _work(self, point: Point) -> None:
        # A stop is raised wherever this thread is when it comes: in compute(), or just after it returned. Every line
        # up to the end of the wait for a stop that was sent is inside the try, so the thread always gets to the end.
        record, failure, started, stopped = None, None, False, False
        while True:
            try:
                if not started:
                    started = True  # no stop comes before the next line: stop() sends none until then
                    self._set_stoppable(True)
                    try:
                        record = self.model.compute(point)
                    except Exception as err:  # noqa: BLE001 - any failure is shown in one line, the controls come back
                        failure = f"failed: {_first_line(err)}"
                if self._set_stoppable(False) and not stopped:
                    # sent as compute() returned and not raised yet: it is raised at this thread's next check, in
                    # this wait (which ends anyway, should compute() have swallowed it)
                    for _ in range(100):
                        time.sleep(0.01)
                break
            except LiveRunStopped:
                stopped = True
        self._computing = False
        try:
            self.progress.children = ()
            for control in self.controls:
                control.disabled = False
            self.stop_button.disabled = True
            try:
                if record is None and failure is None:  # stopped, perhaps once compute() had stored the record
                    record = self.model.stored(point)[0]
            except Exception as err:  # noqa: BLE001 - the thread must not end with the status saying "computing"
                failure = f"failed: {_first_line(err)}"
            # the status speaks of this run only where its point is shown: not where the reader moved on as the run
            # ended (refresh() showed that other point), nor where the point could not be shown (it says why)
            if not self.refresh() or self.point() != point:
                return
            if record is not None and failure is None:
                self.status.value = "<i>computed live</i>"
            else:
                self.status.value = f"<b>{html.escape(failure or 'stopped: nothing was stored for this point')}</b>"
                self.compute_button.disabled = False
        finally:
            self._worker = None  # last: a click until here finds this run on, not a second one to start

    def _set_stoppable(self, stoppable: bool) -> bool:
        """The worker's side of :meth:`stop`: whether the run can be stopped from now on; returns whether a stop was
        sent since the last call."""
        with self._stop_lock:
            self._stoppable = stoppable
            sent, self._stop_sent = self._stop_sent, False
        return sent

    def _add_bar(self, bar_widget) -> None:
        # A finished bar (leave=False) closes its widget; a closed widget cannot stay among the children.
        shown = [child for child in self.progress.children if child.comm is not None]
        self.progress.children = (*shown, bar_widget)

    def _route_interrupts_here(self) -> None:
        # The kernel's interrupt is a SIGINT, which ipykernel ignores between cells, so it would never reach a
        # thread. While a handler (this button's click) runs, ipykernel restores afterwards the handler it saved
        # before: make that one stop a live run and otherwise behave as before. Best effort: elsewhere, the stop
        # button remains.
        if threading.current_thread() is not threading.main_thread():
            return
        shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
        kernel = getattr(shell, "kernel", None)
        previous = (getattr(kernel, "saved_sigint_handler", None) if kernel is not None
                    else signal.getsignal(signal.SIGINT))
        if getattr(previous, "explorer", None) is self:
            return
        # an explorer of a cell run before, with no live run, has nothing to stop: skip its handler, so re-running
        # the cell neither chains handlers nor keeps every explorer before alive
        while getattr(previous, "explorer", None) is not None and previous.explorer._worker is None:
            previous = previous.previous

        def on_interrupt(signum, frame):
            if self._worker is not None and self._worker.is_alive():
                self.stop()
            elif callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # the default would end the program: the closest is to stop it
                raise KeyboardInterrupt

        on_interrupt.explorer, on_interrupt.previous = self, previous
        if kernel is not None and hasattr(kernel, "saved_sigint_handler"):
            kernel.saved_sigint_handler = on_interrupt
        else:
            signal.signal(signal.SIGINT, on_interrupt)

    def _show_data(self, point: Point) -> None:
        try:
            self.data_view.value = _image_html(self.model.data_grid(point), "")
        except PaperlibError as err:
            why = "is not on this machine" if isinstance(err, DataNotFound) else "cannot be read"
            self.data_view.value = (f'<p class="explorer-empty">The data of this point {why}: '
                                    f'{html.escape(str(err))}</p>')

    def _show_stored_along(self, point: Point, stored_here: bool) -> None:
        ratios, ipcs = self.model.stored_along(point, stored_here)
        if not ratios and not ipcs:
            self.stored_along.value = "<small>no stored run along the sliders from here</small>"
            return
        along = [f"{self.ratio.description} {' · '.join(map(percent, ratios))} (at IPC {point.ipc})" if ratios else "",
                 f"IPC {' · '.join(map(str, ipcs))} (at {percent(point.ratio)})" if ipcs else ""]
        self.stored_along.value = f"<small>stored, answered at once: {'; '.join(filter(None, along))}</small>"

    def _time_estimate(self, point: Point) -> str:
        """How long a live run of ``point`` takes, in words (shown before and during the run)."""
        estimate = self.model.estimate_seconds(point)
        about = (f"about {estimate:.0f} s, estimated from the stored runs" if estimate
                 else "time unknown: no stored run of this method")
        if "supcon_epochs" in relevant_fields(self.model.params(point, live=True)):  # the run trains an encoder
            about += "; the first KDE run of a dataset also trains its encoder (a few minutes)"
        return about

    def _show_empty(self, point: Point) -> None:
        hint = REPRODUCE_HINT.format(profile=self.profile)
        self.status.value = (f"<i>not computed yet at this point</i>: run <code>{hint}</code> for the profile's "
                             f"runs, or press <b>compute live</b> ({html.escape(self._time_estimate(point))})")
        self.compute_button.disabled = False
        self.training_view.value = _image_html(None, "not computed yet at this point")
        self.metrics.value = ""

    def _show(self, point: Point, record: dict, scale: str) -> None:
        if METHODS[point.method].distils:
            self.training_view.value = _image_html(self.model.training_grid(point, scale),
                                                   "the distilled images of this run are not stored")
        else:
            self.training_view.value = _image_html(
                None, f"{point.method}: the model trains on {point.ipc} real images per class drawn from the biased "
                      "data (left); nothing is distilled")
        paper = reported(self.model.params(point, live=scale == "live"))
        self.metrics.value = metrics_html(record, scale, self.model.live_settings(point), paper)
