"""QSM Reproducibility: reconstruct QSM, run blinded repeat readings, extract radiomics, report agreement.

A thin 3D Slicer front over ``QSMReproducibilityLib`` (the science) and ``QSMReproducibilityMRML`` (the
scene glue). Extra Python packages are checked when first needed, never at import, so this file imports
only what Slicer ships.
"""

import contextlib
import logging
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Annotated

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _addLibraryToPath() -> str:
    """Make ``QSMReproducibilityLib`` importable: installed next to this file, or one level up in the source tree."""
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for candidate in (moduleDir, os.path.dirname(moduleDir)):
        if os.path.isdir(os.path.join(candidate, "QSMReproducibilityLib")):
            if candidate not in sys.path:
                sys.path.insert(0, candidate)
            return candidate
    return moduleDir


LIBRARY_PARENT_DIR = _addLibraryToPath()

import QSMReproducibilityMRML as mrml  # noqa: E402  (it imports QSMReproducibilityLib.terminology)

SETTINGS_OBSERVER = "QSMReproducibility/ObserverID"
SETTINGS_STUDY = "QSMReproducibility/LastStudyFolder"
READING_LAYOUT_ID = 5301  # an ID no Slicer layout uses
SAMPLE_CASE_ID = "QSMPhantom01"

INPUT_FOLDER = "BIDS anat or DICOM folder"
INPUT_NIFTI = "Magnitude and phase NIfTI files"
INPUT_SCENE = "Magnitude and phase volumes in the scene"
RECON_METHODS = ["star", "tv", "iterative-tikhonov", "tikhonov", "tkd"]  # QSMReproducibilityLib.recon.pipeline.METHODS
UNWRAP_METHODS = ["temporal", "laplacian"]  # QSMReproducibilityLib.recon.pipeline.UNWRAP_METHODS
BACKGROUND_METHODS = ["tfi", "vsharp", "pdf", "lbv"]  # QSMReproducibilityLib.recon.pipeline.BACKGROUND_METHODS
MASK_METHODS = ["bet", "threshold"]  # QSMReproducibilityLib.recon.mask.MASK_METHODS
PHASE_UNITS = ["auto", "radians", "siemens", "rescale"]  # QSMReproducibilityLib.io.PHASE_UNITS
LESION_TYPES = ["hematoma", "calcification"]  # QSMReproducibilityLib.terminology.LESION_TYPES
ICC_FORMS = ["A,1", "C,1", "1,1", "A,k", "C,k", "1,k"]


#
# QSMReproducibility
#


class QSMReproducibility(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("QSM Reproducibility")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["Segmentations", "SegmentEditor", "Terminologies"]
        self.parent.contributors = ["QSMReproducibility contributors"]
        self.parent.helpText = _("""
Quantitative susceptibility mapping (QSM) reproducibility studies of vertebral-artery lesions:
reconstruct QSM from multi-echo GRE (BIDS, NIfTI or DICOM), run blinded repeat readings by several
observers with a wash-out between readings, extract the 107 PyRadiomics features and the CSF-referenced
mean/median QSM, and report intra- and interobserver agreement (ICC, wCV, Lin's CCC, overall CCC).
<br><br>
The workflow follows Park S.I., Kim D., Jung S.C., Nam Y., Alabdulwahhab A., Lee J., Choi K.M.
<i>Feasibility and intra- and interobserver reproducibility of quantitative susceptibility mapping with
radiomic features for intracranial dissecting intramural hematomas and atherosclerotic calcifications.</i>
Scientific Reports.
""")
        self.parent.acknowledgementText = _("""
Radiomic features are computed with PyRadiomics (van Griethuysen J.J.M. et al., Cancer Research 2017),
provided in Slicer by the SlicerRadiomics extension. The reading workflow uses Slicer's Segment Editor.
""")
        slicer.app.connect("startupCompleted()", _onStartupCompleted)


def _onStartupCompleted():
    """Register the sample case, the terminology and the reading layout once the application is up.

    Each registration runs on its own: one that fails (an API missing from this Slicer version) is
    logged and does not keep the others from running.
    """
    for register in (registerSampleData, loadTerminology, registerReadingLayout):
        try:
            register()
        except Exception:  # noqa: BLE001 - start-up must go on; the failure is in the log with its trace
            logging.exception("QSMReproducibility: %s failed at start-up", register.__name__)


def _resourcePath(filename: str) -> str:
    """A file of the extension's Resources folder: next to the installed module, or in the source tree."""
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(moduleDir, "Resources", filename),
        os.path.join(os.path.dirname(moduleDir), "Resources", filename),
    ):
        if os.path.exists(candidate):
            return candidate
    return os.path.join(moduleDir, "Resources", filename)


def loadTerminology() -> str:
    """Load the project's terminology (hematoma, calcification, CSF) into Slicer's Terminologies module."""
    path = _resourcePath("QSMReproducibility.term.json")
    if not os.path.exists(path) or not hasattr(slicer.modules, "terminologies"):
        return ""
    return slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)


def registerReadingLayout() -> None:
    """A layout for reading: a large axial view with sagittal and coronal views beside it."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return
    views = ""
    for tag, orientation, label, color in (
        ("Yellow", "Sagittal", "Y", "#EDD54C"),
        ("Green", "Coronal", "G", "#6EB04B"),
    ):
        views += f"""
      <item><view class="vtkMRMLSliceNode" singletontag="{tag}">
        <property name="orientation" action="default">{orientation}</property>
        <property name="viewlabel" action="default">{label}</property>
        <property name="viewcolor" action="default">{color}</property>
      </view></item>"""
    layoutXml = f"""
<layout type="horizontal" split="true">
  <item splitSize="650"><view class="vtkMRMLSliceNode" singletontag="Red">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">R</property>
    <property name="viewcolor" action="default">#F34A33</property>
  </view></item>
  <item splitSize="350"><layout type="vertical">{views}
  </layout></item>
</layout>"""
    layoutNode = layoutManager.layoutLogic().GetLayoutNode()
    if not layoutNode.IsLayoutDescription(READING_LAYOUT_ID):
        layoutNode.AddLayoutDescription(READING_LAYOUT_ID, layoutXml)


def registerSampleData():
    """Offer one synthetic QSM case in the Sample Data module.

    There is no download server: the case is simulated on first use with the library's phantom
    (BIDS multi-echo GRE plus the true susceptibility map) and loaded from the cache folder.
    """
    import SampleData

    iconsPath = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "Icons")
    # registerCustomSampleDataCategory exists from Slicer 5.12 (Modules/Scripted/SampleData/SampleData.py at
    # v5.12.0; absent at v5.10.0, where a source's category needs no registration and shows under its name).
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("QSMReproducibility",
                                                                    title=_("QSM Reproducibility"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="QSMReproducibility",
        sampleName=SAMPLE_CASE_ID,
        thumbnailFileName=os.path.join(iconsPath, "QSMReproducibility.png"),
        uris=[None],
        fileNames=[f"{SAMPLE_CASE_ID}_chi.nii.gz"],
        nodeNames=[f"{SAMPLE_CASE_ID} true QSM"],
        loadFiles=[False],
        customDownloader=_loadPhantomSample,
    )


def _loadPhantomSample(source=None):
    """Simulate (once) and load the phantom case: first-echo magnitude and true QSM, shown in the reading layout."""
    logic = QSMReproducibilityLogic()
    with _userAction(_("Could not create the phantom sample case.")):
        logic.setupPythonRequirements()
        caseDir = os.path.join(slicer.app.cachePath, "QSMReproducibility", SAMPLE_CASE_ID)
        case = logic.phantomCase(caseDir)
        qsmNode = logic.loadVolumeFile(case.chi_path, f"{SAMPLE_CASE_ID} true QSM")
        logic.showQsm(qsmNode)
        return [qsmNode]
    return []


#
# QSMReproducibilityParameterNode
#


@parameterNodeWrapper
class QSMReproducibilityParameterNode:
    """The module's choices, saved with the scene.

    studyFolder - study store folder (``study.sqlite`` inside).
    observerId - who is reading; also remembered in the application settings.
    inputKind, inputFolder, magnitudeFile, phaseFile, magnitudeVolume, phaseVolume - the GRE input.
    echoTimesMs - echo times in milliseconds, comma separated; read from the input, editable.
    b0Tesla - main field strength.
    phaseUnits - how the stored phase values are read (auto: from their range; radians, siemens, rescale).
    method, unwrapMethod, backgroundMethod, maskMethod, maskIndex - reconstruction settings (maskIndex picks one
        of the nine candidate masks that maskMethod makes).
    qsmOutputFile - where the reconstructed QSM NIfTI is written.
    qsmVolume - the QSM shown and added to the study.
    caseId, lesionType - identity of the case added to the study.
    exportFolder, radiomicsParams, iccForm, stabilityThreshold, featureTable - export settings.
    daskScheduler - address of a Dask scheduler for Process study (empty: in Slicer's process).
    """

    studyFolder: pathlib.Path
    observerId: str = ""
    inputKind: Annotated[str, Choice([INPUT_FOLDER, INPUT_NIFTI, INPUT_SCENE])] = INPUT_FOLDER
    inputFolder: pathlib.Path
    magnitudeFile: pathlib.Path
    phaseFile: pathlib.Path
    magnitudeVolume: vtkMRMLScalarVolumeNode
    phaseVolume: vtkMRMLScalarVolumeNode
    echoTimesMs: str = ""
    b0Tesla: Annotated[float, WithinRange(0.1, 21.0)] = 3.0
    phaseUnits: Annotated[str, Choice(PHASE_UNITS)] = "auto"
    method: Annotated[str, Choice(RECON_METHODS)] = "star"
    unwrapMethod: Annotated[str, Choice(UNWRAP_METHODS)] = "temporal"
    backgroundMethod: Annotated[str, Choice(BACKGROUND_METHODS)] = "tfi"
    maskMethod: Annotated[str, Choice(MASK_METHODS)] = "bet"
    maskIndex: Annotated[int, WithinRange(0, 8)] = 4
    qsmOutputFile: pathlib.Path
    qsmVolume: vtkMRMLScalarVolumeNode
    caseId: str = ""
    lesionType: Annotated[str, Choice(LESION_TYPES)] = "hematoma"
    exportFolder: pathlib.Path
    radiomicsParams: pathlib.Path
    iccForm: Annotated[str, Choice(ICC_FORMS)] = "A,1"
    stabilityThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.85
    featureTable: vtkMRMLTableNode
    daskScheduler: str = ""


def _given(path) -> bool:
    """True for a path the user chose (the parameter node stores 'no path' as '.')."""
    return path is not None and str(path) not in ("", ".")


@contextlib.contextmanager
def _userAction(failureMessage: str):
    """Run a user action: cancellation is quiet, project errors show their message, anything else a trace."""
    from QSMReproducibilityLib.errors import Cancelled, QSMReproError

    try:
        with slicer.util.WaitCursor():
            yield
    except Cancelled:
        logging.info("QSMReproducibility: cancelled by the user")
        slicer.util.showStatusMessage(_("Cancelled."), 3000)
    except (QSMReproError, mrml.ReadingSceneError) as error:
        logging.error("QSMReproducibility: %s", error)
        slicer.util.errorDisplay(f"{failureMessage}\n\n{error}")
    except Exception as error:  # noqa: BLE001 - show every unexpected failure, with details
        import traceback

        logging.exception("QSMReproducibility: unexpected error")
        slicer.util.errorDisplay(f"{failureMessage}\n\n{error}", detailedText=traceback.format_exc())


#
# QSMReproducibilityWidget
#


class QSMReproducibilityWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: wires the .ui to the parameter node and calls the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._study = None
        self._gre = None
        self._candidates = None
        self._reading = None  # QSMReproducibilityMRML.OpenReading
        self._cancelRequested = False
        self.segmentEditorWidget = None

    # ---- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/QSMReproducibility.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = QSMReproducibilityLogic()

        self._setupSegmentEditor()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.openStudyButton.connect("clicked(bool)", self.onOpenStudy)
        self.ui.createStudyButton.connect("clicked(bool)", self.onCreateStudy)
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        self.ui.inputKindComboBox.connect("currentIndexChanged(int)", self._updateInputRows)
        self.ui.loadInputButton.connect("clicked(bool)", self.onLoadInput)
        self.ui.computeMasksButton.connect("clicked(bool)", self.onComputeMasks)
        self.ui.maskIndexSpinBox.connect("valueChanged(int)", self.onMaskIndexChanged)
        self.ui.runReconstructionButton.connect("clicked(bool)", self.onRunReconstruction)
        self.ui.cancelReconstructionButton.connect("clicked(bool)", self.onCancel)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.startReadingButton.connect("clicked(bool)", self.onStartReading)
        self.ui.finishReadingButton.connect("clicked(bool)", self.onFinishReading)
        self.ui.closeReadingButton.connect("clicked(bool)", self.onCloseReading)
        self.ui.extractFeaturesButton.connect("clicked(bool)", self.onExtractFeatures)
        self.ui.writeReportButton.connect("clicked(bool)", self.onWriteReport)
        self.ui.processStudyButton.connect("clicked(bool)", self.onProcessStudy)

        self.initializeParameterNode()
        self._updateInputRows()
        self._updateButtons()

    def _setupSegmentEditor(self) -> None:
        """An embedded Segment Editor with its own editor node; the segmentation and volume are set per reading."""
        self.segmentEditorWidget = slicer.qMRMLSegmentEditorWidget()
        self.segmentEditorWidget.setMaximumNumberOfUndoStates(10)
        # The editor node before the scene, so the selections made when the scene is set are kept in it
        # (as Modules/Scripted/SegmentEditor/SegmentEditor.py does at v5.10.0 and v5.12.0).
        self._selectSegmentEditorNode()
        self.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.segmentEditorWidget.setSegmentationNodeSelectorVisible(False)
        self.segmentEditorWidget.setSourceVolumeNodeSelectorVisible(False)
        self.segmentEditorWidget.setSwitchToSegmentationsButtonVisible(False)
        # Segments are fixed by the study (lesion_right, lesion_left, csf): no adding or removing.
        self.segmentEditorWidget.setAddRemoveSegmentButtonsVisible(False)
        self.segmentEditorWidget.unorderedEffectsVisible = False
        self.segmentEditorWidget.setEffectNameOrder(
            ["Paint", "Draw", "Erase", "Threshold", "Islands", "Smoothing", "Scissors", "Level tracing"]
        )
        self.segmentEditorWidget.jumpToSelectedSegmentEnabled = True
        self.ui.segmentEditorFrame.layout().addWidget(self.segmentEditorWidget)
        self.segmentEditorWidget.enabled = False

    def _selectSegmentEditorNode(self) -> None:
        # Called on every selection: a scene close resets the node's overwrite mode (see
        # QSMReproducibilityMRML.segment_editor_node).
        editorNode = mrml.segment_editor_node(slicer.mrmlScene)
        if self.segmentEditorWidget.mrmlSegmentEditorNode() != editorNode:
            self.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)

    def cleanup(self) -> None:
        self.removeObservers()
        if self._study is not None:
            self._study.close()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._selectSegmentEditorNode()
        self.segmentEditorWidget.updateWidgetFromMRML()
        self.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self) -> None:
        self.segmentEditorWidget.setActiveEffect(None)
        self.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.segmentEditorWidget.removeViewObservations()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.segmentEditorWidget.setSegmentationNode(None)
        self.segmentEditorWidget.removeViewObservations()
        self.segmentEditorWidget.enabled = False
        self._reading = None  # its nodes go with the scene; the session stays open in the study
        self._candidates = None

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
            self._selectSegmentEditorNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        settings = qt.QSettings()
        if not self._parameterNode.observerId:
            self._parameterNode.observerId = str(settings.value(SETTINGS_OBSERVER, ""))
        if not _given(self._parameterNode.studyFolder) and settings.value(SETTINGS_STUDY, ""):
            self._parameterNode.studyFolder = pathlib.Path(str(settings.value(SETTINGS_STUDY)))

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    # ---- state display -----------------------------------------------------------------------

    def _updateInputRows(self, *_args) -> None:
        kind = self.ui.inputKindComboBox.currentText
        rows = {
            INPUT_FOLDER: (self.ui.inputFolderLabel, self.ui.inputFolderPathLineEdit),
            INPUT_NIFTI: (self.ui.magnitudeFileLabel, self.ui.magnitudeFilePathLineEdit,
                          self.ui.phaseFileLabel, self.ui.phaseFilePathLineEdit),
            INPUT_SCENE: (self.ui.magnitudeVolumeLabel, self.ui.magnitudeVolumeSelector,
                          self.ui.phaseVolumeLabel, self.ui.phaseVolumeSelector),
        }
        for rowKind, widgets in rows.items():
            for widget in widgets:
                widget.visible = rowKind == kind

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        reading = self._reading is not None
        observer = bool(p.observerId.strip())
        self.ui.openStudyButton.enabled = not reading
        self.ui.createStudyButton.enabled = not reading
        self.ui.nextCaseButton.enabled = self._study is not None and observer and not reading
        self.ui.startReadingButton.enabled = self._study is not None and observer and not reading
        self.ui.finishReadingButton.enabled = reading
        self.ui.closeReadingButton.enabled = reading
        self.segmentEditorWidget.enabled = reading
        self.ui.computeMasksButton.enabled = self._gre is not None
        self.ui.runReconstructionButton.enabled = self._gre is not None and _given(p.qsmOutputFile)
        self.ui.addCaseButton.enabled = (
            self._study is not None and bool(p.caseId.strip()) and _given(p.qsmOutputFile)
            and os.path.exists(str(p.qsmOutputFile))
        )
        self.ui.extractFeaturesButton.enabled = self._study is not None and _given(p.exportFolder)
        self.ui.processStudyButton.enabled = self._study is not None and _given(p.exportFolder) and not reading
        self.ui.writeReportButton.enabled = (
            _given(p.exportFolder) and os.path.exists(os.path.join(str(p.exportFolder), "features.csv"))
        )

    def _refreshCaseTable(self) -> None:
        table = self.ui.caseTableWidget
        table.setRowCount(0)
        if self._study is None:
            self.ui.studyStatusLabel.text = _("No study open.")
            return
        rows = self.logic.caseRows(self._study, self._parameterNode.observerId.strip())
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for columnIndex, text in enumerate(row):
                item = qt.QTableWidgetItem(str(text))
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                table.setItem(rowIndex, columnIndex, item)
        table.resizeColumnsToContents()
        self.ui.studyStatusLabel.text = _("{study}: {cases} cases, {readings} finished readings").format(
            study=self._study.root.name, cases=len(rows), readings=len(self._study.readings()))

    def _selectedCaseId(self):
        # QAbstractItemView::selectedIndexes is protected in Qt; the selection model is the public API.
        rows = self.ui.caseTableWidget.selectionModel().selectedRows()
        if len(rows) != 1:
            return None
        item = self.ui.caseTableWidget.item(rows[0].row(), 0)
        return item.text() if item else None

    def _progressBarCallback(self):
        """A library progress callback driving the section's progress bar and its Cancel button."""
        self._cancelRequested = False
        self.ui.cancelReconstructionButton.enabled = True

        def progress(fraction, message):
            self.ui.reconstructionProgressBar.value = int(round(100 * fraction))
            self.ui.reconstructionProgressBar.setFormat(f"{message} %p%")
            slicer.app.processEvents()
            return not self._cancelRequested

        return progress

    @contextlib.contextmanager
    def _progressDialog(self, title: str):
        """A modal, cancellable progress dialog fed by the library's progress callbacks."""
        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=100)

        def progress(fraction, message):
            dialog.value = int(round(100 * fraction))
            dialog.labelText = message
            slicer.app.processEvents()
            return not dialog.wasCanceled

        try:
            yield progress
        finally:
            dialog.close()

    def _ensureDependencies(self) -> bool:
        def confirm(packages) -> bool:
            return slicer.util.confirmOkCancelDisplay(
                _("QSM Reproducibility needs these Python packages, which will be installed now:\n\n{packages}")
                .format(packages="\n".join(packages)), windowTitle=_("Install Python packages"))

        try:
            self.logic.setupPythonRequirements(confirm=confirm)
            return True
        except Exception as error:  # noqa: BLE001 - pip and the user's refusal raise different types
            logging.exception("QSMReproducibility: dependency installation failed")
            slicer.util.errorDisplay(
                _("Required Python packages could not be installed:\n\n{error}").format(error=error))
            return False

    # ---- study -------------------------------------------------------------------------------

    def _rememberChoices(self) -> None:
        settings = qt.QSettings()
        settings.setValue(SETTINGS_OBSERVER, self._parameterNode.observerId.strip())
        if _given(self._parameterNode.studyFolder):
            settings.setValue(SETTINGS_STUDY, str(self._parameterNode.studyFolder))

    def onOpenStudy(self) -> None:
        self._openStudy(create=False)

    def onCreateStudy(self) -> None:
        self._openStudy(create=True)

    def _openStudy(self, create: bool) -> None:
        if not self._ensureDependencies():
            return
        folder = self._parameterNode.studyFolder
        if not _given(folder):
            slicer.util.errorDisplay(_("Choose the study folder first."))
            return
        with _userAction(_("Could not open the study.")):
            if self._study is not None:
                self._study.close()
                self._study = None
            self._study = self.logic.openStudy(folder, create=create, observer=self._parameterNode.observerId.strip())
            self._rememberChoices()
        self._refreshCaseTable()
        self._updateButtons()

    def onNextCase(self) -> None:
        self._startReading(caseId=None)

    # ---- input and reconstruction ------------------------------------------------------------

    def onLoadInput(self) -> None:
        if not self._ensureDependencies():
            return
        p = self._parameterNode
        with _userAction(_("Could not load the GRE input.")):
            teS = self.logic.parseEchoTimesMs(p.echoTimesMs)
            if p.inputKind == INPUT_FOLDER:
                self._gre = self.logic.loadGreFolder(p.inputFolder, fallbackTeS=teS, phaseUnits=p.phaseUnits)
            elif p.inputKind == INPUT_NIFTI:
                self._gre = self.logic.loadGreNifti(p.magnitudeFile, p.phaseFile, teS=teS, b0Tesla=p.b0Tesla,
                                                    phaseUnits=p.phaseUnits)
            else:
                self._gre = self.logic.greFromNodes(p.magnitudeVolume, p.phaseVolume, teS=teS, b0Tesla=p.b0Tesla,
                                                    phaseUnits=p.phaseUnits)
            p.echoTimesMs = ", ".join(f"{te * 1000:.3f}".rstrip("0").rstrip(".") for te in self._gre.te_s)
            p.b0Tesla = float(self._gre.b0_tesla)
            voxel = ", ".join(f"{v:.2f}" for v in self._gre.voxel_size_mm)
            self.ui.inputInfoLabel.text = _("{echoes} echoes, grid {shape}, voxel {voxel} mm, B0 {b0:g} T").format(
                echoes=self._gre.n_echoes, shape=" x ".join(map(str, self._gre.shape)), voxel=voxel,
                b0=self._gre.b0_tesla)
            self._candidates = None
            self.logic.showMagnitude(self._gre)
            if not _given(p.qsmOutputFile):
                p.qsmOutputFile = pathlib.Path(self.logic.defaultQsmPath(self._gre, p.inputFolder, p.magnitudeFile))
        self._updateButtons()

    def onComputeMasks(self) -> None:
        try:
            with _userAction(_("Could not compute candidate masks.")):
                self._currentGre()
                self._candidates = self.logic.candidateMasks(self._gre, self._parameterNode.maskMethod,
                                                             progress=self._progressBarCallback())
                self.ui.maskIndexSpinBox.maximum = len(self._candidates.masks) - 1
                self.onMaskIndexChanged(self.ui.maskIndexSpinBox.value)
        finally:
            self.ui.cancelReconstructionButton.enabled = False

    def onMaskIndexChanged(self, index) -> None:
        if self._candidates is None or self._gre is None:
            return
        index = int(index)
        mask = self._candidates.masks[index]
        self.logic.showCandidateMask(mask, self._gre.affine)
        if self._candidates.method == "bet":
            text = _("BET f = {fraction:.1f}, {voxels} voxels")
        else:
            text = _("threshold {fraction:.2f} x p99, {voxels} voxels")
        self.ui.maskFractionLabel.text = text.format(fraction=self._candidates.fractions[index], voxels=int(mask.sum()))

    def _currentGre(self):
        """The loaded GRE with the echo times as currently shown (they may have been edited)."""
        from QSMReproducibilityLib.errors import InputError

        if self._gre is None:
            raise InputError(_("Load the GRE input first."))
        teS = self.logic.parseEchoTimesMs(self._parameterNode.echoTimesMs)
        self._gre = self.logic.withEchoTimes(self._gre, teS, self._parameterNode.b0Tesla)
        return self._gre

    def onRunReconstruction(self) -> None:
        p = self._parameterNode
        self.ui.runReconstructionButton.enabled = False
        try:
            with _userAction(_("Reconstruction failed.")):
                gre = self._currentGre()
                qsmNode = self.logic.reconstruct(
                    gre, p.qsmOutputFile, method=p.method, unwrap=p.unwrapMethod, background=p.backgroundMethod,
                    maskMethod=p.maskMethod, maskIndex=p.maskIndex if self._candidates is not None else None,
                    candidates=self._candidates,
                    qsmNode=p.qsmVolume, progress=self._progressBarCallback(),
                )
                p.qsmVolume = qsmNode
                self.logic.showQsm(qsmNode)
                self.ui.reconstructionProgressBar.setFormat(_("QSM written to {path}").format(path=p.qsmOutputFile))
        finally:
            self.ui.cancelReconstructionButton.enabled = False
            self._updateButtons()

    def onCancel(self) -> None:
        self._cancelRequested = True

    def onAddCase(self) -> None:
        p = self._parameterNode
        with _userAction(_("Could not add the case to the study.")):
            maskFile = self.logic.maskPathFor(p.qsmOutputFile)
            # A fingerprint of the GRE input, never its path (which may name the patient).
            self._study.add_case(p.caseId.strip(), p.lesionType, str(p.qsmOutputFile),
                                 mask_path=maskFile if os.path.exists(maskFile) else None,
                                 gre_input=self._gre.source if self._gre is not None else None,
                                 reconstruction=self.logic.reconstructionRecord(p.qsmOutputFile))
        self._refreshCaseTable()
        self._updateButtons()

    # ---- reading -----------------------------------------------------------------------------

    def onStartReading(self) -> None:
        self._startReading(caseId=self._selectedCaseId())

    def _startReading(self, caseId) -> None:
        if self._study is None or self._reading is not None:
            return
        observer = self._parameterNode.observerId.strip()
        with _userAction(_("Could not start the reading.")):
            self._rememberChoices()
            self._reading = self.logic.startReading(self._study, observer, caseId)
            session, qsmNode, segmentationNode = (self._reading.session, self._reading.qsm_node,
                                                  self._reading.segmentation_node)
            self.logic.showQsm(qsmNode, segmentationNode)
            self._selectSegmentEditorNode()
            self.segmentEditorWidget.setSegmentationNode(segmentationNode)
            self.segmentEditorWidget.setSourceVolumeNode(qsmNode)
            self.segmentEditorWidget.setCurrentSegmentID("lesion_right")
            self.ui.readingInfoLabel.text = _(
                "Reading {reading} of case {case} ({lesionType}) by {observer}. Draw the lesion(s) and the CSF "
                "reference in the posterior horns of the lateral ventricles, then Finish reading.").format(
                reading=session.reading, case=session.case_id, lesionType=session.lesion_type, observer=observer)
        self._updateButtons()

    def onFinishReading(self) -> None:
        if self._reading is None:
            return
        finished = False
        with _userAction(_("The reading could not be finished; it is still open.")):
            self.segmentEditorWidget.setActiveEffect(None)
            record = self.logic.finishReading(self._study, self._reading)
            finished = True
        if finished:
            self.segmentEditorWidget.setSegmentationNode(None)
            self.segmentEditorWidget.setSourceVolumeNode(None)
            self._reading = None
            self.ui.readingInfoLabel.text = _("Reading saved: {path}").format(path=record.segmentation_path)
        self._refreshCaseTable()
        self._updateButtons()

    def onCloseReading(self) -> None:
        if self._reading is None:
            return
        if not slicer.util.confirmOkCancelDisplay(
            _("Remove this reading from the scene without saving? It stays open in the study and resumes "
              "when you start it again (your drawing is lost).")):
            return
        session = self._reading.session
        with _userAction(_("Could not close the reading.")):
            self._clearReading()
            self.ui.readingInfoLabel.text = _("Reading of case {case} closed without saving.").format(
                case=session.case_id)
        self._updateButtons()

    def _clearReading(self) -> None:
        reading = self._reading
        self.segmentEditorWidget.setSegmentationNode(None)
        self.segmentEditorWidget.setSourceVolumeNode(None)
        self._reading = None
        self.logic.removeReading(reading)

    # ---- export ------------------------------------------------------------------------------

    def onExtractFeatures(self) -> None:
        p = self._parameterNode
        if not self._ensureDependencies() or not self.logic.radiomicsAvailable():
            return
        with _userAction(_("Feature extraction failed.")), \
                self._progressDialog(_("Extracting radiomic features")) as progress:
            params = p.radiomicsParams if _given(p.radiomicsParams) else None
            tableNode, csvPath = self.logic.extractFeatures(self._study, p.exportFolder, paramsPath=params,
                                                            tableNode=p.featureTable, progress=progress)
            p.featureTable = tableNode
            slicer.util.showStatusMessage(_("Features written to {path}").format(path=csvPath), 5000)
        self._updateButtons()

    def onProcessStudy(self) -> None:
        p = self._parameterNode
        if not self._ensureDependencies() or not self.logic.radiomicsAvailable():
            return
        with _userAction(_("Processing the study failed.")), \
                self._progressDialog(_("Processing the study")) as progress:
            summary = self.logic.processStudy(self._study.root, p.exportFolder, scheduler=p.daskScheduler.strip(),
                                              paramsPath=p.radiomicsParams if _given(p.radiomicsParams) else None,
                                              progress=progress)
        self._refreshCaseTable()
        self._updateButtons()
        if summary is not None:
            message = self.logic.processSummaryText(summary)
            (slicer.util.warningDisplay if not summary.ok else slicer.util.infoDisplay)(message)

    def onWriteReport(self) -> None:
        p = self._parameterNode
        if not self._ensureDependencies():
            return
        with _userAction(_("The agreement report could not be written.")), \
                self._progressDialog(_("Writing the agreement report")) as progress:
            outputs = self.logic.writeReport(p.exportFolder, iccForm=p.iccForm, threshold=p.stabilityThreshold,
                                             progress=progress)
            html = outputs.get("report_html")
            if html is not None:
                qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(html)))


#
# QSMReproducibilityLogic
#


class QSMReproducibilityLogic(ScriptedLoadableModuleLogic):
    """MRML glue between the scene and ``QSMReproducibilityLib``; usable without the widget."""

    REQUIREMENTS_FILE = "requirements.txt"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return QSMReproducibilityParameterNode(super().getParameterNode())

    # ---- dependencies ------------------------------------------------------------------------

    def requirements(self) -> list:
        """Requirement strings of ``Resources/requirements.txt`` (comments and blank lines skipped)."""
        path = _resourcePath(self.REQUIREMENTS_FILE)
        with open(path, encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].strip() for line in handle]
        return [line for line in lines if line]

    def setupPythonRequirements(self, skipInTesting: bool = True, confirm=None) -> None:
        """Install the library's missing Python packages (not PyRadiomics: see :meth:`radiomicsAvailable`).

        Slicer 5.12+ has ``slicer.packaging.pip_ensure`` (Base/Python/slicer/packaging.py at v5.12.0), which
        asks before installing and lists what it installs; Slicer 5.10 has only ``slicer.util.pip_install``
        (Base/Python/slicer/util.py at v5.10.0, a list of pip arguments), and the missing packages are named
        in the status bar and the log first, and ``confirm(packages)`` (the panel's OK/Cancel question) may
        decline. Either way pip gets a constraints file pinning the numpy, scipy and SimpleITK that Slicer
        runs, so installing never replaces them.
        """
        constraints = self._pipConstraintsFile()
        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            requirements = packaging.load_requirements(_resourcePath(self.REQUIREMENTS_FILE))
            packaging.pip_ensure(requirements, constraints=constraints, requester="QSMReproducibility",
                                 skip_in_testing=skipInTesting)
            return
        missing = [requirement for requirement in self.requirements() if not _isInstalled(requirement)]
        if not missing:
            return
        logging.info("QSMReproducibility: installing Python packages: %s", ", ".join(missing))
        if confirm is not None and not confirm(missing):
            raise RuntimeError(_("installation of {packages} was declined").format(packages=", ".join(missing)))
        slicer.util.showStatusMessage(_("Installing Python packages: {packages}").format(packages=", ".join(missing)))
        slicer.util.pip_install(["-c", constraints, *missing])

    @staticmethod
    def _pipConstraintsFile() -> str:
        """A pip constraints file with the versions of numpy, scipy and SimpleITK that this Slicer runs."""
        import importlib.metadata

        pins = []
        for name in ("numpy", "scipy", "SimpleITK"):
            try:
                pins.append(f"{name}=={importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                continue
        path = pathlib.Path(slicer.app.temporaryPath) / "QSMReproducibility-constraints.txt"
        path.write_text("\n".join(pins) + "\n", encoding="utf-8")
        return str(path)

    def radiomicsAvailable(self, showMessage: bool = True) -> bool:
        """PyRadiomics comes from the SlicerRadiomics extension; it is never built here (no wheel for Python 3.12)."""
        try:
            import radiomics  # noqa: F401
            return True
        except ImportError:
            if showMessage:
                slicer.util.errorDisplay(_(
                    "PyRadiomics is not available. Install the SlicerRadiomics extension from the Extensions "
                    "Manager, restart Slicer, and try again."))
            return False

    # ---- volumes -----------------------------------------------------------------------------

    def loadVolumeFile(self, path, name: str, attributes=None):
        """A 3-D NIfTI volume as a scalar volume node (the library's reader; (i, j, k) + RAS affine)."""
        from QSMReproducibilityLib.io import load_volume

        data, affine = load_volume(path)
        return mrml.volume_node_from_array(slicer.mrmlScene, data, affine, name=name, attributes=attributes)

    def showQsm(self, qsmNode, segmentationNode=None) -> None:
        """QSM with a diverging colour map centred on 0 ppm in the reading layout; the segmentation outlined
        (``QSMReproducibilityMRML.show_reading``, as the browser reading station shows it)."""
        mrml.show_reading(qsmNode, segmentationNode)
        if slicer.app.layoutManager() is not None:
            registerReadingLayout()
            slicer.app.layoutManager().setLayout(READING_LAYOUT_ID)
            slicer.util.setSliceViewerLayers(background=qsmNode, foreground=None, label=None, fit=True)

    def showMagnitude(self, gre):
        """The first-echo magnitude of the loaded GRE, for judging candidate masks."""
        node = slicer.mrmlScene.GetFirstNodeByName("GRE magnitude echo 1")
        node = mrml.volume_node_from_array(
            slicer.mrmlScene, gre.magnitude[..., 0], gre.affine, name="GRE magnitude echo 1", node=node)
        if slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node

    def showCandidateMask(self, mask, affine):
        """One candidate brain mask as a label overlay."""
        node = slicer.mrmlScene.GetFirstNodeByName("Candidate brain mask")
        node = mrml.volume_node_from_array(slicer.mrmlScene, mask, affine, name="Candidate brain mask",
                                           node_class="vtkMRMLLabelMapVolumeNode", node=node)
        if slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(label=node, labelOpacity=0.4)
        return node

    # ---- input and reconstruction ------------------------------------------------------------

    @staticmethod
    def parseEchoTimesMs(text: str):
        """'4.92, 7.38 ...' (ms) -> echo times in seconds, or None when empty."""
        from QSMReproducibilityLib.errors import InputError

        parts = [part for part in str(text or "").replace(";", ",").replace(" ", ",").split(",") if part]
        if not parts:
            return None
        try:
            return [float(part) / 1000.0 for part in parts]
        except ValueError:
            raise InputError(f"echo times {text!r}: give numbers in milliseconds separated by commas") from None

    def loadGreFolder(self, folder, fallbackTeS=None, phaseUnits="auto"):
        """A BIDS anat or DICOM folder; echo times come from the sidecars/DICOM, else from ``fallbackTeS``.

        Typed echo times never silently replace the recorded ones here; to override them, edit them
        after loading (they are applied at reconstruction).
        """
        from QSMReproducibilityLib.errors import InputError
        from QSMReproducibilityLib.io import load_gre

        if not _given(folder):
            raise InputError("choose the BIDS anat folder or the DICOM folder of the multi-echo GRE")
        try:
            return load_gre(str(folder), phase_units=phaseUnits)
        except InputError:
            if fallbackTeS is None:
                raise
            return load_gre(str(folder), te_s=fallbackTeS, phase_units=phaseUnits)

    def loadGreNifti(self, magnitudeFile, phaseFile, teS=None, b0Tesla=3.0, phaseUnits="auto"):
        from QSMReproducibilityLib.errors import InputError
        from QSMReproducibilityLib.io import load_nifti_gre

        if not (_given(magnitudeFile) and _given(phaseFile)):
            raise InputError("choose both the magnitude and the phase NIfTI file")
        if teS is None:
            raise InputError("NIfTI input has no echo times: type them (ms, comma separated) and load again")
        return load_nifti_gre([str(magnitudeFile)], [str(phaseFile)], teS, b0Tesla, phase_units=phaseUnits)

    def greFromNodes(self, magnitudeNode, phaseNode, teS=None, b0Tesla=3.0, phaseUnits="auto"):
        """GRE from scene volumes: a scalar volume per part (one echo), or a sequence of echoes per part."""
        from QSMReproducibilityLib.errors import InputError
        from QSMReproducibilityLib.io import GreSeries, apply_phase_scaling, phase_scaling, validate_gre

        if magnitudeNode is None or phaseNode is None:
            raise InputError("choose the magnitude and the phase volume")
        magnitude, affineMagnitude = self._echoStack(magnitudeNode)
        phase, affinePhase = self._echoStack(phaseNode)
        teS = validate_gre(magnitude, phase, teS, affineMagnitude, affinePhase, magnitudeNode.GetName())
        scaling = phase_scaling(phase, phaseNode.GetName(), phaseUnits)
        return GreSeries(magnitude.astype(np.float32), apply_phase_scaling(phase, scaling), teS, float(b0Tesla),
                         affineMagnitude, source=f"scene volumes {magnitudeNode.GetName()} / {phaseNode.GetName()}",
                         phase_scaling=scaling)

    @staticmethod
    def _echoStack(node):
        """(X, Y, Z, E) array and affine of a volume, or of the echo volumes of the sequence that shows it."""
        sequence = None
        if hasattr(slicer.modules, "sequences"):
            browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(node)
            if browser is not None:
                sequence = browser.GetSequenceNode(node)
        if sequence is None:
            array, affine = mrml.array_from_volume_node(node)
            return array[..., None], affine
        echoes, affine = [], None
        for index in range(sequence.GetNumberOfDataNodes()):
            array, affine = mrml.array_from_volume_node(sequence.GetNthDataNode(index))
            echoes.append(array)
        return np.stack(echoes, axis=3), affine

    @staticmethod
    def withEchoTimes(gre, teS, b0Tesla):
        """The GRE with edited echo times / field strength (validated by the library)."""
        import dataclasses

        from QSMReproducibilityLib.io import validate_gre

        if teS is None:
            return gre
        teS = validate_gre(gre.magnitude, gre.phase_rad, teS, gre.affine, gre.affine, gre.source or "GRE")
        return dataclasses.replace(gre, te_s=teS, b0_tesla=float(b0Tesla))

    @staticmethod
    def defaultQsmPath(gre, inputFolder, magnitudeFile) -> str:
        """Beside the input, never inside a BIDS or DICOM folder: ``<folder>_qsm_ppm.nii.gz``."""
        for path in (inputFolder, magnitudeFile):
            if _given(path):
                base = pathlib.Path(str(path))
                stem = base.name.split(".")[0]
                return str(base.parent / f"{stem}_qsm_ppm.nii.gz")
        return os.path.join(slicer.app.temporaryPath, "qsm_ppm.nii.gz")

    def candidateMasks(self, gre, method="bet", progress=None):
        """The study's nine candidate brain masks (pick one by eye): BET at nine fractional thresholds."""
        from QSMReproducibilityLib.recon.mask import candidate_masks

        return candidate_masks(gre.magnitude, gre.voxel_size_mm, method, progress=progress)

    def reconstruct(self, gre, qsmOutputFile, *, method="star", unwrap="temporal", background="tfi",
                    maskMethod="bet", maskIndex=None, candidates=None, qsmNode=None, progress=None):
        """Reconstruct χ (ppm), write it as NIfTI on the GRE grid, and show it as a volume node."""
        from QSMReproducibilityLib.errors import InputError
        from QSMReproducibilityLib.io import save_nifti
        from QSMReproducibilityLib.recon.pipeline import ReconParams, acquisition_record, reconstruct, write_sidecar

        if not _given(qsmOutputFile):
            raise InputError("choose where to write the QSM (.nii.gz)")
        params = ReconParams(method=method, unwrap=unwrap, background=background, mask_method=maskMethod,
                             mask_index=maskIndex)
        # Candidates already computed for the overlay are reused, not computed again.
        result = reconstruct(gre, params, mask_candidates=candidates, progress=progress)
        save_nifti(str(qsmOutputFile), result.chi_ppm, gre.affine, description=f"QSM chi ppm ({method})")
        # The same provenance as `qsmrepro reconstruct` writes: method, mask candidate and f, B0, echoes.
        write_sidecar(str(qsmOutputFile), acquisition_record(gre), result)
        save_nifti(self.maskPathFor(qsmOutputFile), result.brain_mask.astype(np.uint8), gre.affine,
                   description="chosen brain mask")
        name = pathlib.Path(str(qsmOutputFile)).name.split(".")[0]
        return mrml.volume_node_from_array(slicer.mrmlScene, result.chi_ppm, gre.affine, name=name, node=qsmNode)

    @staticmethod
    def reconstructionRecord(qsmFile):
        """How the QSM was made (from its sidecar), for the study's audit log, as `qsmrepro study add-case` records it."""
        from QSMReproducibilityLib.recon.pipeline import reconstruction_record

        return reconstruction_record(str(qsmFile))

    @staticmethod
    def maskPathFor(qsmOutputFile) -> str:
        """Where the chosen brain mask is written beside a QSM file (``qsm.nii.gz`` → ``qsm_mask.nii.gz``)."""
        path = pathlib.Path(str(qsmOutputFile))
        return str(path.with_name(path.name.split(".")[0] + "_mask.nii.gz"))

    def phantomCase(self, caseDir, caseId=SAMPLE_CASE_ID, lesionType="hematoma", seed=11):
        """The library's phantom case in ``caseDir`` (simulated once, reused afterwards)."""
        from QSMReproducibilityLib import phantom

        marker = os.path.join(caseDir, "truth", "phantom.json")
        if os.path.exists(marker):
            import json

            with open(marker, encoding="utf-8") as handle:
                info = json.load(handle)
            if info.get("case_id") == caseId and info.get("seed") == seed:
                return _StoredPhantom(caseDir, info)
            shutil.rmtree(caseDir, ignore_errors=True)
        return phantom.simulate_case(caseId, lesionType, seed=seed, out_dir=caseDir, compress=True)

    # ---- study and readings ------------------------------------------------------------------

    def openStudy(self, folder, *, create=False, observer=""):
        """Open (or create) a study store and register the observer."""
        from QSMReproducibilityLib.readings import Study

        folder = str(folder)
        study = Study.create(folder) if create else Study.open(folder)
        if observer:
            study.add_observer(observer)
        return study

    @staticmethod
    def caseRows(study, observer: str) -> list:
        """Rows of the case list: case, lesion type, this observer's finished readings, status (``Study.case_status``).

        Only the observer's own progress is shown; no other observer's reading is ever revealed.
        """
        return [(row.case_id, row.lesion_type, f"{row.finished}/{row.total}", row.label)
                for row in study.case_status(observer)]

    @staticmethod
    def startReading(study, observer: str, caseId=None, scene=None, overrideReason=None):
        """Open a reading and put only its QSM and a fresh tagged segmentation into the scene (``OpenReading``)."""
        return mrml.start_reading(scene or slicer.mrmlScene, study, observer, caseId, override_reason=overrideReason)

    @staticmethod
    def readingSessionsInScene(scene=None) -> dict:
        """Session UID -> case ID of every reading that has nodes in the scene."""
        return mrml.readings_in_scene(scene or slicer.mrmlScene)

    @staticmethod
    def finishReading(study, reading, scene=None):
        """Record the reading through the study store and remove its nodes; on refusal it stays open."""
        return mrml.finish_reading(scene or slicer.mrmlScene, study, reading)

    @staticmethod
    def removeReading(reading, scene=None) -> int:
        """Remove a reading's nodes without saving; the session stays open in the study."""
        return mrml.close_reading(scene or slicer.mrmlScene, reading)

    # ---- export ------------------------------------------------------------------------------

    def extractFeatures(self, study, exportFolder, *, paramsPath=None, tableNode=None, progress=None):
        """Radiomics of every finished reading -> ``features.csv`` and a table node."""
        from QSMReproducibilityLib import feature_table, radiomics
        from QSMReproducibilityLib.errors import InputError

        if not _given(exportFolder):
            raise InputError("choose the export folder")
        # One process: worker processes must not be forked from inside the application.
        features = radiomics.extract_readings(study.readings(), params_path=str(paramsPath) if paramsPath else None,
                                              progress=progress, workers=1)
        csvPath = str(feature_table.write_feature_table(features, os.path.join(str(exportFolder), "features.csv")))
        columns = {name: features[name].tolist() for name in features.columns}
        tableNode = mrml.table_node_from_columns(slicer.mrmlScene, columns, name="QSM radiomic features",
                                                 node=tableNode)
        return tableNode, csvPath

    def processStudy(self, studyFolder, exportFolder, *, scheduler="", paramsPath=None, progress=None):
        """``qsmrepro study process`` from the panel: every case lacking a QSM, every reading's features, the report.

        In Slicer's own process (worker processes must not be forked from inside the application), or on the
        workers of a running Dask scheduler when ``scheduler`` (``tcp://HOST:PORT``) is given. ``progress`` gets
        the same fractions and messages (with the time left) as the command line's bar. Returns the
        ``ProcessSummary``.
        """
        from QSMReproducibilityLib.errors import InputError
        from QSMReproducibilityLib.process import process_study

        if not _given(exportFolder):
            raise InputError("choose the output folder")
        return process_study(str(studyFolder), workers=None if scheduler else 0, scheduler=scheduler or None,
                             output_dir=str(exportFolder), params_path=str(paramsPath) if paramsPath else None,
                             progress=progress)

    @staticmethod
    def processSummaryText(summary) -> str:
        """What a run did, for a message box: counts, failures with their errors, the report."""
        from QSMReproducibilityLib.process import format_duration

        lines = [f"{len(summary.reconstructed) + len(summary.reused)} case(s) reconstructed; features of "
                 f"{summary.readings} reading(s): {summary.features_computed} computed, {summary.features_cached} "
                 f"cached ({summary.executor}, {format_duration(summary.seconds)})."]
        lines += [f"{label}: {error}" for label, error in summary.failed.items()]
        if summary.report:
            lines.append(f"Report: {summary.report['report_html']}")
        elif summary.report_error or summary.report_skipped:
            lines.append(f"Report not written: {summary.report_error or summary.report_skipped}")
        return "\n".join(lines)

    def writeReport(self, exportFolder, *, iccForm="A,1", threshold=0.85, progress=None):
        """Agreement report (HTML, XLSX, CSV, PNG) from ``features.csv`` in the export folder."""
        from QSMReproducibilityLib import feature_table, report
        from QSMReproducibilityLib.errors import InputError

        csvPath = os.path.join(str(exportFolder), "features.csv")
        if not os.path.exists(csvPath):
            raise InputError(f"{csvPath} not found: extract the features first")
        features = feature_table.read_feature_csv(csvPath)
        settings = {"ICC form": iccForm, "stability threshold": threshold, "features": csvPath}
        return report.write_report(features, str(exportFolder), settings=settings, threshold=threshold,
                                   icc_form=iccForm, progress=progress)


class _StoredPhantom:
    """A phantom case already on disk (the fields :class:`PhantomCase` has that the module uses)."""

    def __init__(self, caseDir, info):
        self.case_id = info["case_id"]
        self.lesion_type = info["lesion_type"]
        self.sides = tuple(info["sides"])
        self.anat_dir = pathlib.Path(caseDir) / "anat"
        truth = pathlib.Path(caseDir) / "truth"
        self.chi_path = next(iter(sorted(truth.glob("chi.nii*"))))
        self.labels_path = next(iter(sorted(truth.glob("labels.nii*"))))


def _isInstalled(requirement: str) -> bool:
    """Whether a requirement such as ``nibabel>=5.0`` is satisfied (version checked where ``packaging`` is present)."""
    import importlib.metadata

    try:
        from packaging.requirements import Requirement

        parsed = Requirement(requirement)
        try:
            return importlib.metadata.version(parsed.name) in parsed.specifier
        except importlib.metadata.PackageNotFoundError:
            return False
    except ImportError:
        name = requirement.split(">")[0].split("=")[0].split("<")[0].strip()
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            return False


#
# QSMReproducibilityTest
#


class QSMReproducibilityTest(ScriptedLoadableModuleTest):
    """A whole small reading, headless: phantom -> QSM -> study -> reading -> .seg.nrrd -> clean scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ReadingOnPhantom()

    def test_ReadingOnPhantom(self):
        self.delayDisplay("Starting the reading test on a phantom case")
        logic = QSMReproducibilityLogic()
        # A test must not change Slicer's Python environment: without the library's packages it is skipped.
        missing = [requirement for requirement in logic.requirements() if not _isInstalled(requirement)]
        if missing:
            message = "QSMReproducibility self-test skipped: not installed: " + ", ".join(missing)
            logging.warning(message)
            self.delayDisplay(message)
            return

        from QSMReproducibilityLib import phantom, segio
        from QSMReproducibilityLib.io import load_volume
        from QSMReproducibilityLib.readings import Study
        from QSMReproducibilityLib.recon.pipeline import reconstruct_path

        workDir = tempfile.mkdtemp(prefix="QSMReproducibilityTest_")
        try:
            case = phantom.simulate_case("SelfTest01", "hematoma", seed=7, out_dir=os.path.join(workDir, "case"))
            qsmPath = os.path.join(workDir, "qsm.nii.gz")
            reconstruct_path(case.anat_dir, qsmPath, method="star")
            labels = load_volume(case.labels_path)[0].astype(int)
            trueChi = load_volume(case.chi_path)[0].astype(float)
            self.delayDisplay("QSM reconstructed")

            study = Study.create(os.path.join(workDir, "study"))
            study.add_observer("observerA")
            study.add_case(case.case_id, case.lesion_type, qsmPath)
            nodesBefore = slicer.mrmlScene.GetNumberOfNodes()

            reading = logic.startReading(study, "observerA")
            session, qsmNode, segmentationNode = reading.session, reading.qsm_node, reading.segmentation_node
            self.assertEqual(session.case_id, case.case_id)
            self.assertEqual(session.reading, 1)
            segmentIds = [segmentationNode.GetSegmentation().GetNthSegmentID(i)
                          for i in range(segmentationNode.GetSegmentation().GetNumberOfSegments())]
            self.assertEqual(segmentIds, ["lesion_right", "lesion_left", "csf"])
            tags = mrml.reading_tags_of(segmentationNode)
            self.assertEqual(tags[mrml.TAG_PREFIX + "SessionUID"], session.session_uid)

            # The "observer" draws the true lesion and the true CSF of the phantom.
            drawn = {f"lesion_{side}": labels == phantom.LESION_LABEL[side] for side in case.sides}
            drawn["csf"] = labels == phantom.CSF
            mrml.set_segment_masks(segmentationNode, drawn, qsmNode)
            record = logic.finishReading(study, reading)
            self.delayDisplay("Reading finished")

            # Nothing of the reading is left in the scene.
            self.assertEqual(logic.readingSessionsInScene(), {})
            self.assertIsNone(slicer.mrmlScene.GetNodeByID(segmentationNode.GetID() or "none"))
            self.assertLessEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore + 1)  # + subject hierarchy

            # The stored file holds exactly the drawn voxels, tagged as finished.
            stored = segio.read_seg_nrrd(record.segmentation_path)
            masks = stored.on_grid(labels.shape, case.affine)
            for segmentId, mask in drawn.items():
                self.assertEqual(int(masks[segmentId].sum()), int(mask.sum()))
                self.assertTrue(np.array_equal(masks[segmentId], mask))
            for spec in stored.segments:
                self.assertEqual(spec.tags[mrml.TAG_PREFIX + "Status"], "finished")
                self.assertEqual(spec.tags[mrml.TAG_PREFIX + "Observer"], "observerA")

            # CSF-referenced lesion χ of the reconstruction is close to the phantom's truth
            # (STAR-QSM on this phantom: about 0.39 ppm for a true 0.42 ppm).
            qsm = load_volume(qsmPath)[0].astype(float)
            for side in case.sides:
                lesion = drawn[f"lesion_{side}"]
                measured = qsm[lesion].mean() - qsm[drawn["csf"]].mean()
                truth = trueChi[lesion].mean() - trueChi[drawn["csf"]].mean()
                self.assertGreater(measured, 0.0)
                self.assertAlmostEqual(measured, truth, delta=0.05)

            # Radiomics from the stored reading, where PyRadiomics is available (SlicerRadiomics).
            if logic.radiomicsAvailable(showMessage=False):
                from QSMReproducibilityLib import radiomics

                features = radiomics.extract_readings(study.readings(), workers=1)
                side = case.sides[0]
                qsmMean = features[(features.feature == "qsm_mean") & (features.lesion_id == side)]["value"].iloc[0]
                expected = qsm[drawn[f"lesion_{side}"]].mean() - qsm[drawn["csf"]].mean()
                self.assertAlmostEqual(float(qsmMean), float(expected), places=4)
            study.close()
            self.delayDisplay("Test passed")
        finally:
            shutil.rmtree(workDir, ignore_errors=True)
