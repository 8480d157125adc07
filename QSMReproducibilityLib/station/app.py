"""The reading station's page and its handlers, on trame-slicer (Slicer's MRML and Segment Editor logic).

One process serves one observer: trame keeps one UI state per server, shared by every tab that opens
the link, so a process never holds more than one observer's case list or open reading. All MRML work
runs on the server's event loop, as trame-slicer requires.

What the page can do is what the reading core (``QSMReproducibilityMRML``) does: ``start_reading``,
``finish_reading``, ``close_reading``, the shared display settings and voxel counts; the study store
decides every rule. Refusals are shown on the page in the store's words, never only logged.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging

import QSMReproducibilityMRML as mrml
from trame.app import TrameApp
from trame_server.utils.typed_state import TypedState
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic.segmentation import (
    DrawEffectLogic,
    EraseEffectLogic,
    IslandsEffectLogic,
    PaintEffectLogic,
    ThresholdEffectLogic,
)
from trame_slicer.app.ui import create_vertical_view_gutter_ui
from trame_slicer.app.ui.segmentation import (
    DrawEffectUI,
    IslandsEffectUI,
    PaintEffectState,
    PaintEffectUI,
    ThresholdEffectUI,
)
from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
from trame_slicer.app.ui.slider import Slider
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.segmentation import (
    BrushDiameterMode,
    SegmentationEffectDraw,
    SegmentationEffectErase,
    SegmentationEffectIslands,
    SegmentationEffectNoTool,
    SegmentationEffectPaint,
    SegmentationEffectThreshold,
)
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from undo_stack import UndoStack
from vtkmodules.vtkCommonCore import vtkObject

from ..errors import QSMReproError

logger = logging.getLogger(__name__)

LAYOUT_ID = "reading"
UNDO_STEPS = 20
BRUSH_MM = {"min_value": 0.5, "max_value": 20.0, "step": 0.5, "value": 3.0}
"""Brush diameter in mm (absolute, so a stroke covers the same anatomy at any zoom). QSM voxels of the
study were 0.72 x 0.72 x 2 mm; a vertebral-artery wall lesion is a few mm across."""

EFFECTS = (
    ("none", "No tool", "mdi-cursor-default", SegmentationEffectNoTool),
    ("paint", "Paint", "mdi-brush", SegmentationEffectPaint),
    ("draw", "Draw", "mdi-draw", SegmentationEffectDraw),
    ("erase", "Erase", "mdi-eraser", SegmentationEffectErase),
    ("threshold", "Threshold", "mdi-auto-fix", SegmentationEffectThreshold),
    ("islands", "Islands", "mdi-scatter-plot", SegmentationEffectIslands),
)
PROCESSING_POLL_S = 2.0
"""How often the page re-reads the progress of `qsmrepro study process` on the study."""
STATE_COLORS = {"ready": "primary", "in progress": "warning", "wash-out": "grey", "done": "success"}


def _shown(handler):
    """Run a page handler so that its failure reaches the reader: trame only logs what a handler raises.

    Project errors (the store's refusals) are shown in their own words; anything else is logged with
    its traceback and shown as one line. The page's busy flag is cleared either way.
    """

    @functools.wraps(handler)
    def run(self, *args, **kwargs):
        self.state.error = ""
        self.state.notice = ""
        try:
            return handler(self, *args, **kwargs)
        except QSMReproError as exc:
            self.state.error = " ".join(str(exc).split())
        except Exception as exc:  # noqa: BLE001 - the reader must see that something failed
            logger.exception("reading station: %s failed", handler.__name__)
            self.state.error = f"{handler.__name__.strip('_').replace('_', ' ')} failed: {type(exc).__name__}: {exc}"
        finally:
            self.state.flush()
        return None

    return run


class ReadingStation(TrameApp):
    """One observer's reading station on one study.

    Parameters
    ----------
    study : QSMReproducibilityLib.readings.Study
        The open study store; the station reads and writes it only through the reading core and
        ``Study.case_status``.
    observer : str
        The registered observer this process serves.
    server : trame server, optional
    """

    def __init__(self, study, observer: str, server=None):
        super().__init__(server)
        self.study = study
        self.observer = observer
        self.reading = None  # QSMReproducibilityMRML.OpenReading

        self.server.enable_module(trame_slicer_module)
        self.slicer = SlicerApp()
        if not logging.getLogger().isEnabledFor(logging.INFO):
            # VTK's deprecation notes on every view resize would bury the printed link (qsmrepro -v shows them).
            vtkObject.GlobalWarningDisplayOff()
        self.scene = self.slicer.scene
        self.editor = self.slicer.segmentation_editor
        mrml.register_segmentation_converters()
        mrml.configure_segment_editor_node(self.editor.editor_node)
        self.undo_stack = UndoStack(undo_limit=UNDO_STEPS)
        self.editor.set_undo_stack(self.undo_stack)

        register_rca_factories(self.slicer.view_manager, self.server, slice_view_ui_f=_slice_view_gutter)
        self.layout_manager = LayoutManager(self.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout_dict({LAYOUT_ID: Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(),
            ViewLayoutDefinition.sagittal_view()])})

        # trame-slicer's own effect logic (parameters, apply buttons) drives the effects.
        self._effect_logic = [logic(self.server, self.slicer) for logic in (
            PaintEffectLogic, EraseEffectLogic, DrawEffectLogic, ThresholdEffectLogic, IslandsEffectLogic)]

        self._brush = TypedState(self.state, PaintEffectState)
        self._init_state()
        self._build_ui()
        self.layout_manager.set_layout(LAYOUT_ID)
        self._connect_editor()
        self._refresh_cases()
        self.ctrl.on_server_ready.add(self._watch_processing)

    # ---- state -------------------------------------------------------------------------------

    def _init_state(self) -> None:
        state = self.state
        state.trame__title = f"QSM reading station - {self.observer}"
        state.observer = self.observer
        state.cases = []
        state.reading_open = False
        state.reading_title = ""
        state.segments = []
        state.active_segment = ""
        state.voxel_counts = {}
        state.voxel_counts_version = 0
        state.active_effect = "none"
        state.can_undo = False
        state.can_redo = False
        state.error = ""
        state.notice = ""
        state.confirm_close = False
        state.processing = ""

    def _connect_editor(self) -> None:
        self.editor.segmentation_modified.connect(self._update_counts)
        self.editor.active_effect_name_changed.connect(self._on_effect_changed)
        self.editor.active_segment_id_changed.connect(self._on_segment_changed)
        for signal in (self.undo_stack.can_undo_changed, self.undo_stack.can_redo_changed,
                       self.undo_stack.index_changed):
            signal.connect(self._update_undo)
        self.state.change("active_segment")(self._on_segment_selected)

    def _refresh_cases(self) -> None:
        self.state.cases = [
            {"case_id": row.case_id, "lesion_type": row.lesion_type, "progress": f"{row.finished}/{row.total}",
             "state": row.state, "label": row.label, "color": STATE_COLORS.get(row.state, "grey"),
             "can_start": row.state in ("ready", "in progress", "wash-out")}
            for row in self.study.case_status(self.observer)
        ]

    def _processing_text(self) -> str:
        from ..process import describe_progress, read_progress

        return describe_progress(read_progress(self.study.root), blinded=True)

    def _watch_processing(self, **_) -> None:
        """Show the progress of `qsmrepro study process` on this study, as its owner writes it (every 2 s)."""
        async def watch():
            while True:
                text = self._processing_text()
                if text != self.state.processing:
                    with self.state:
                        self.state.processing = text
                await asyncio.sleep(PROCESSING_POLL_S)

        asyncio.get_event_loop().create_task(watch())

    def _update_counts(self, *_args) -> None:
        if self.reading is None:
            return
        counts = mrml.segment_voxel_counts(self.reading.segmentation_node)
        with self.state:
            self.state.voxel_counts = counts
            self.state.voxel_counts_version += 1

    def _update_undo(self, *_args) -> None:
        with self.state:
            self.state.can_undo = self.undo_stack.can_undo()
            self.state.can_redo = self.undo_stack.can_redo()

    def _on_effect_changed(self, effect_name: str) -> None:
        key = next((key for key, _, _, effect in EFFECTS if effect.get_effect_name() == effect_name), "none")
        with self.state:
            self.state.active_effect = key

    def _on_segment_changed(self, segment_id: str) -> None:
        with self.state:
            self.state.active_segment = segment_id or ""

    def _on_segment_selected(self, active_segment, **_) -> None:
        if self.reading is not None and active_segment and active_segment != self.editor.get_active_segment_id():
            self.editor.set_active_segment_id(active_segment)

    # ---- actions -----------------------------------------------------------------------------

    @_shown
    def start_next(self) -> None:
        """The next case of the observer's randomised order (the store picks it)."""
        self._start(None)

    @_shown
    def start_case(self, case_id: str) -> None:
        self._start(case_id)

    def _start(self, case_id) -> None:
        if self.reading is not None:
            session = self.reading.session
            self.state.error = (f"Reading {session.reading} of case {session.case_id} is open: finish it, or close "
                                "it without saving, before starting another.")
            return
        reading = mrml.start_reading(self.scene, self.study, self.observer, case_id)
        self.reading = reading
        try:
            mrml.show_reading(reading.qsm_node, reading.segmentation_node)
            self.slicer.display_manager.show_volume_in_slice_background(reading.qsm_node)
            self.editor.set_active_segmentation(reading.segmentation_node, reading.qsm_node)
            mrml.configure_segment_editor_node(self.editor.editor_node)  # a scene change may have reset it
            mrml.renew_empty_labelmap_layers(reading.segmentation_node)  # fills render over the χ map
            self.editor.set_active_segment_id("lesion_right")
            self._set_brush()
            self.slicer.display_manager.reset_views()
        except BaseException:
            self._clear_reading()
            raise
        session = reading.session
        segmentation = reading.segmentation_node.GetSegmentation()
        self.state.segments = [
            {"segment_id": segmentation.GetNthSegmentID(index),
             "name": segmentation.GetNthSegment(index).GetName(),
             "color": "#%02x%02x%02x" % tuple(round(255 * c) for c in segmentation.GetNthSegment(index).GetColor())}
            for index in range(segmentation.GetNumberOfSegments())]
        self.state.reading_title = (f"Case {session.case_id} ({session.lesion_type}), reading {session.reading} "
                                    f"of {self.study.readings_per_observer}")
        self.state.reading_open = True
        self.state.active_segment = "lesion_right"
        self._update_counts()
        self._update_undo()
        self._refresh_cases()

    def _set_brush(self) -> None:
        """The brush of Paint and Erase in mm, at the diameter the page shows."""
        diameter_mm = self._brush.data.brush_diameter_slider.value
        for effect in (SegmentationEffectPaint, SegmentationEffectErase):
            self.editor.get_effect(effect).set_brush_diameter(diameter_mm, BrushDiameterMode.Absolute)

    @_shown
    def set_effect(self, key: str) -> None:
        effect = next(effect for name, _, _, effect in EFFECTS if name == key)
        if self.reading is None:
            return
        self.editor.set_active_effect_type(effect)

    @_shown
    def undo(self) -> None:
        if self.undo_stack.can_undo():
            self.undo_stack.undo()
        self._update_counts()

    @_shown
    def redo(self) -> None:
        if self.undo_stack.can_redo():
            self.undo_stack.redo()
        self._update_counts()

    @_shown
    def finish(self) -> None:
        if self.reading is None:
            return
        # Refused: the reading stays open as it was, tool and all. (A threshold preview is not part of the
        # segmentation until applied, as in Slicer.)
        record = mrml.finish_reading(self.scene, self.study, self.reading)
        self._clear_reading(remove_nodes=False)
        self.state.notice = (f"Reading {record.reading} of case {record.case_id} is saved in the study. "
                             "Start the next case when you are ready.")
        self._refresh_cases()

    @_shown
    def close_without_saving(self) -> None:
        self.state.confirm_close = False
        if self.reading is None:
            return
        session = self.reading.session
        self._clear_reading()
        self.state.notice = (f"Case {session.case_id} was closed without saving; it stays open in the study and "
                             "starts again, empty, from the case list.")
        self._refresh_cases()

    def _clear_reading(self, *, remove_nodes: bool = True) -> None:
        """Take the reading out of the editor, the views and (unless finished) the scene."""
        reading, self.reading = self.reading, None
        self.editor.deactivate_effect()
        self.editor.clear()
        # The editor logic keeps the reading's nodes (and its working copies of the volume) until the next
        # segmentation is set: let them go now.
        self.editor.editor_logic.SetSegmentationNode(None)
        self.editor.editor_logic.SetSourceVolumeNode(None)
        self.slicer.display_manager.show_volume_in_slice_background(None)
        if remove_nodes and reading is not None:
            mrml.close_reading(self.scene, reading)
        # trame-slicer's wrapper of the active segmentation and its nodes form a reference cycle (an
        # observer on the node calls back into the wrapper): only the cyclic collector frees the reading's
        # volume, whenever it next runs, so a day of readings would keep several volumes. Free them now.
        del reading
        gc.collect()
        self.state.reading_open = False
        self.state.reading_title = ""
        self.state.segments = []
        self.state.voxel_counts = {}
        self.state.active_effect = "none"
        self._update_undo()

    # ---- page --------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server, full_height=True) as layout:
            self.ui = layout
            layout.title.set_text(f"QSM reading station: observer {self.observer}")
            layout.drawer.width = 430
            layout.footer.hide()
            with layout.toolbar:
                v3.VSpacer()
                html.Div("{{ reading_title }}", id="reading-title", classes="text-subtitle-1 mr-4",
                         v_show=("reading_open",))
            with layout.drawer:
                self._build_messages()
                with html.Div(v_if=("!reading_open",)):
                    self._build_case_list()
                with html.Div(v_if=("reading_open",)):
                    self._build_reading_panel()
            with layout.content, v3.VContainer(fluid=True, classes="pa-0 fill-height"):
                self.layout_manager.initialize_layout_grid(layout)

    def _build_messages(self) -> None:
        v3.VAlert(v_if=("error",), text=("error",), type="error", variant="tonal", density="compact",
                  classes="ma-2", id="error-message", closable=True, click_close="error = ''")
        v3.VAlert(v_if=("notice",), text=("notice",), type="success", variant="tonal", density="compact",
                  classes="ma-2", id="notice-message", closable=True, click_close="notice = ''")

    def _build_case_list(self) -> None:
        with v3.VCard(variant="flat"):
            v3.VCardTitle("Your cases")
            v3.VCardSubtitle("Only your own readings are counted here.")
            html.Div("{{ processing }}", id="processing", v_show=("processing",), classes="text-caption mx-4")
            with v3.VCardActions():
                v3.VBtn("Next case", id="next-case", color="primary", variant="flat",
                        prepend_icon="mdi-play", click=self.start_next)
            with v3.VTable(density="compact", id="case-list"):
                with html.Thead(), html.Tr():
                    for title in ("Case", "Lesion", "Done", "Status", ""):
                        html.Th(title)
                with html.Tbody():
                    with html.Tr(v_for="row in cases", key="row.case_id", id=("`case-${row.case_id}`",)):
                        html.Td("{{ row.case_id }}")
                        html.Td("{{ row.lesion_type }}")
                        html.Td("{{ row.progress }}")
                        with html.Td():
                            v3.VChip("{{ row.label }}", color=("row.color",), size="small",
                                     classes="case-state")
                        with html.Td():
                            v3.VBtn("Start", size="small", variant="tonal", v_if=("row.can_start",),
                                    id=("`start-${row.case_id}`",), click=(self.start_case, "[row.case_id]"))

    def _build_reading_panel(self) -> None:
        with v3.VCard(variant="flat"):
            v3.VCardTitle("Segments")
            with v3.VCardText():
                with v3.VList(density="compact", id="segment-list"):
                    with v3.VListItem(v_for="segment in segments", key="segment.segment_id",
                                      id=("`segment-${segment.segment_id}`",),
                                      active=("segment.segment_id === active_segment",),
                                      click="active_segment = segment.segment_id"):
                        with v3.Template(v_slot_prepend=True):
                            v3.VIcon("mdi-square", color=("segment.color",))
                        v3.VListItemTitle("{{ segment.name }}")
                        with v3.Template(v_slot_append=True):
                            html.Span("{{ voxel_counts[segment.segment_id] || 0 }} voxels",
                                      id=("`count-${segment.segment_id}`",), classes="voxel-count")
            v3.VCardTitle("Tools")
            with v3.VCardText():
                with html.Div(classes="d-flex flex-wrap ga-1"):
                    for key, title, icon, _ in EFFECTS:
                        v3.VBtn(title, id=f"effect-{key}", size="small", prepend_icon=icon,
                                variant=(f"active_effect === '{key}' ? 'flat' : 'tonal'",),
                                color=(f"active_effect === '{key}' ? 'primary' : undefined",),
                                click=(self.set_effect, f"['{key}']"))
                with html.Div(classes="mt-3"):
                    html.Div(f"Brush diameter {{{{ {self._brush.name.brush_diameter_slider.value} }}}} mm",
                             v_if=("active_effect === 'paint' || active_effect === 'erase'",),
                             id="brush-diameter", classes="text-caption")
                    PaintEffectUI(v_if=("active_effect === 'paint' || active_effect === 'erase'",))
                    DrawEffectUI(v_if=("active_effect === 'draw'",))
                    threshold_ui = ThresholdEffectUI(v_if=("active_effect === 'threshold'",))
                    islands_ui = IslandsEffectUI(v_if=("active_effect === 'islands'",))
                with html.Div(classes="d-flex ga-1 mt-2"):
                    v3.VBtn("Undo", id="undo", size="small", prepend_icon="mdi-undo", variant="tonal",
                            disabled=("!can_undo",), click=self.undo)
                    v3.VBtn("Redo", id="redo", size="small", prepend_icon="mdi-redo", variant="tonal",
                            disabled=("!can_redo",), click=self.redo)
            with v3.VCardActions(classes="flex-column align-stretch ga-2"):
                v3.VBtn("Finish reading", id="finish", color="success", variant="flat",
                        prepend_icon="mdi-content-save", click=self.finish)
                v3.VBtn("Close without saving", id="close", variant="text", click="confirm_close = true")
            with v3.VDialog(v_model=("confirm_close",), max_width=420):
                with v3.VCard():
                    v3.VCardText("Close this reading without saving? Your drawing is lost; the case stays open and "
                                 "starts again, empty, from the case list.")
                    with v3.VCardActions():
                        v3.VSpacer()
                        v3.VBtn("Keep reading", click="confirm_close = false")
                        v3.VBtn("Close without saving", id="confirm-close", color="error",
                                click=self.close_without_saving)

        # trame-slicer's effect logic wires its own apply buttons (threshold, islands) to the effects.
        for logic in self._effect_logic:
            if isinstance(logic, ThresholdEffectLogic):
                logic.set_effect_ui(threshold_ui)
            elif isinstance(logic, IslandsEffectLogic):
                logic.set_effect_ui(islands_ui)
        # Brush diameter in mm, not a fraction of the view.
        self._brush.data.brush_diameter_mode = BrushDiameterMode.Absolute
        for key, value in BRUSH_MM.items():
            setattr(self._brush.data.brush_diameter_slider, key, value)


def _slice_view_gutter(server, view_id: str, view) -> None:
    """A slice view's controls: reset the view, and a slider through the slices (no 3D toggle)."""
    create_vertical_view_gutter_ui(server, view_id, view)
    with html.Div(classes="slice-slider-gutter",
                  style="position: absolute; bottom: 0; left: 0; width: 100%; background-color: transparent;"):
        Slider(classes="slice-slider", typed_state=connect_slice_view_slider_to_state(server, view),
               theme="dark", dense=True)


__all__ = ["ReadingStation"]
