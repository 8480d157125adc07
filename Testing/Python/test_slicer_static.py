"""Static checks of the Slicer extension that need no Slicer: build files, catalog entry, .ui, module source.

The module file cannot be imported outside Slicer (it needs qt and the application), so it is checked
with ``ast``; the .ui with ``xml.etree``; CMake files as text. The expectations come from how Slicer
loads a scripted module (every top-level .py of a module folder is loaded as a module; widgets bound
by the ``SlicerParameterName`` property to fields of the ``@parameterNodeWrapper`` class), from the
extensions catalog schema, and from the library's own constants.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "QSMReproducibility"
MODULE_PY = MODULE_DIR / "QSMReproducibility.py"
MRML_PACKAGE = MODULE_DIR / "QSMReproducibilityMRML"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "QSMReproducibility.ui"
CATALOG = REPO / "QSMReproducibility.json"

# What Slicer's Python ships besides the standard library (no pip install needed).
SLICER_SHIPPED = {"slicer", "vtk", "qt", "ctk", "numpy", "SampleData", "QSMReproducibilityMRML"}
MRML_ALLOWED = {"slicer", "vtk", "numpy"}
# The one library module the MRML glue may import: the study's tag names and terminology.
MRML_LIBRARY_MODULES = {"QSMReproducibilityLib.terminology"}

# Properties of slicer-extension-catalog-entry-schema-v1.0.2.json (Slicer/ExtensionsIndex, schemas/).
CATALOG_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                      "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(encoding="utf-8"), filename=str(MODULE_PY))


@pytest.fixture(scope="module")
def ui_root() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def _widgets(ui_root) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ui_root.iter("widget")}


def _parameter_bindings(ui_root) -> dict[str, ET.Element]:
    bindings = {}
    for widget in ui_root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[prop.findtext("string")] = widget
    return bindings


def _parameter_fields(tree: ast.Module) -> dict[str, ast.expr]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper") for d in node.decorator_list
        ):
            return {s.target.id: s.annotation for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in QSMReproducibility.py")


def _module_constants(tree: ast.Module) -> dict[str, object]:
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return constants


def _top_level_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set"
    return match.group(1).split()


# ---------------------------------------------------------------------------------------------------
# .ui


def test_ui_is_qt_designer_xml_with_a_qmrmlwidget_root(ui_root):
    assert ui_root.tag == "ui"
    top = ui_root.find("widget")
    assert top is not None and top.get("class") == "qMRMLWidget" and top.get("name") == "QSMReproducibility"
    sections = [w.get("name") for w in top.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert sections == ["studyCollapsibleButton", "inputCollapsibleButton", "reconstructionCollapsibleButton",
                        "readingCollapsibleButton", "exportCollapsibleButton"]


def test_widget_names_are_unique_and_custom_classes_declared(ui_root):
    names = [w.get("name") for w in ui_root.iter("widget")]
    assert len(names) == len(set(names))
    declared = {c.findtext("class") for c in ui_root.iter("customwidget")}
    used = {w.get("class") for w in ui_root.iter("widget")}
    assert {c for c in used if c.startswith(("ctk", "qMRML", "qSlicer"))} <= declared


def test_every_mrml_combobox_receives_the_scene(ui_root):
    combos = {w.get("name") for w in ui_root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    connected = {c.findtext("receiver") for c in ui_root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert combos and combos <= connected


def test_every_ui_attribute_used_by_the_module_exists_in_the_ui(module_tree, ui_root):
    used = {
        node.attr for node in ast.walk(module_tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }
    assert used, "the widget does not use self.ui"
    missing = used - set(_widgets(ui_root))
    assert not missing, f"self.ui names missing from the .ui: {sorted(missing)}"


def test_parameter_names_in_the_ui_are_exactly_the_wrapper_fields(module_tree, ui_root):
    fields = _parameter_fields(module_tree)
    bindings = _parameter_bindings(ui_root)
    assert set(bindings) - set(fields) == set(), "SlicerParameterName without a parameter-node field"
    assert set(fields) - set(bindings) == set(), "parameter-node field without a widget"


# Which widget classes slicer.parameterNodeWrapper.guiConnectors can bind to which field types.
_CONNECTABLE = {
    "ctkPathLineEdit": lambda a: "pathlib.Path" in a,
    "QLineEdit": lambda a: a == "str",
    "QComboBox": lambda a: a.startswith("Annotated[str, Choice("),
    "QSpinBox": lambda a: a.startswith(("int", "Annotated[int")),
    "QDoubleSpinBox": lambda a: a.startswith(("float", "Annotated[float")),
    "qMRMLNodeComboBox": lambda a: a.startswith("vtkMRML"),
    "QCheckBox": lambda a: a == "bool",
}


def test_each_bound_widget_can_represent_its_field_type(module_tree, ui_root):
    fields = _parameter_fields(module_tree)
    for name, widget in _parameter_bindings(ui_root).items():
        annotation = ast.unparse(fields[name])
        check = _CONNECTABLE.get(widget.get("class"))
        assert check is not None, f"{name}: no parameter-node connector for {widget.get('class')}"
        assert check(annotation), f"{name}: {widget.get('class')} cannot hold {annotation}"


def test_node_comboboxes_offer_the_node_class_of_their_field(module_tree, ui_root):
    fields = _parameter_fields(module_tree)
    for name, widget in _parameter_bindings(ui_root).items():
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        types = [s.text for p in widget.findall("property") if p.get("name") == "nodeTypes" for s in p.iter("string")]
        assert types == [ast.unparse(fields[name])]


# ---------------------------------------------------------------------------------------------------
# Module source


def test_module_defines_the_scripted_module_classes(module_tree):
    classes = {node.name: node for node in module_tree.body if isinstance(node, ast.ClassDef)}
    for name, base in (("QSMReproducibility", "ScriptedLoadableModule"),
                       ("QSMReproducibilityWidget", "ScriptedLoadableModuleWidget"),
                       ("QSMReproducibilityLogic", "ScriptedLoadableModuleLogic"),
                       ("QSMReproducibilityTest", "ScriptedLoadableModuleTest")):
        assert name in classes
        assert base in {ast.unparse(b) for b in classes[name].bases}
    test_methods = {n.name for n in classes["QSMReproducibilityTest"].body if isinstance(n, ast.FunctionDef)}
    assert {"runTest", "setUp"} <= test_methods and any(m.startswith("test_") for m in test_methods)


def test_module_imports_at_top_level_only_what_slicer_ships(module_tree):
    imported = _top_level_imports(module_tree)
    stdlib = set(sys.stdlib_module_names)
    extra = imported - stdlib - SLICER_SHIPPED
    assert not extra, f"top-level imports that Slicer does not ship: {sorted(extra)} (import them where used)"


def test_mrml_glue_imports_only_vtk_numpy_slicer_and_the_vocabulary():
    for path in sorted(MRML_PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        extra = _top_level_imports(tree) - set(sys.stdlib_module_names) - MRML_ALLOWED - {"QSMReproducibilityLib"}
        assert not extra, f"{path.name}: {sorted(extra)}"
        nested = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        nested |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in nested if m.split(".")[0] in {"qt", "ctk"}}
        library = {m for m in nested if m.split(".")[0] == "QSMReproducibilityLib"}
        assert library <= MRML_LIBRARY_MODULES, f"{path.name}: {sorted(library - MRML_LIBRARY_MODULES)}"


def test_the_vocabulary_the_mrml_glue_imports_needs_only_numpy():
    # Slicer imports the MRML glue when it loads the module, before the library's requirements are installed.
    code = ("import sys\nbefore = {m.split('.')[0] for m in sys.modules}\n"
            + "".join(f"import {name}\n" for name in sorted(MRML_LIBRARY_MODULES))
            + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(done.stdout.split()) - {"QSMReproducibilityLib"} == {"numpy"}


def test_choices_match_the_library(module_tree):
    constants = _module_constants(module_tree)
    pipeline = pytest.importorskip("QSMReproducibilityLib.recon.pipeline")
    terminology = pytest.importorskip("QSMReproducibilityLib.terminology")
    assert constants["RECON_METHODS"] == list(pipeline.METHODS)
    assert constants["UNWRAP_METHODS"] == list(pipeline.UNWRAP_METHODS)
    assert constants["BACKGROUND_METHODS"] == list(pipeline.BACKGROUND_METHODS)
    assert constants["MASK_METHODS"] == list(pytest.importorskip("QSMReproducibilityLib.recon.mask").MASK_METHODS)
    assert constants["PHASE_UNITS"] == list(pytest.importorskip("QSMReproducibilityLib.io").PHASE_UNITS)
    assert constants["LESION_TYPES"] == list(terminology.LESION_TYPES)
    assert constants["ICC_FORMS"][0] == "A,1"  # the study's ICC form
    assert set(constants["ICC_FORMS"]) == {"1,1", "A,1", "C,1", "1,k", "A,k", "C,k"}


def test_field_strength_range_matches_the_library(module_tree, ui_root):
    io = pytest.importorskip("QSMReproducibilityLib.io")
    annotation = _parameter_fields(module_tree)["b0Tesla"]
    within = next(n for n in ast.walk(annotation) if isinstance(n, ast.Call) and ast.unparse(n.func) == "WithinRange")
    assert tuple(ast.literal_eval(a) for a in within.args) == io.B0_RANGE_TESLA
    spin = _widgets(ui_root)["b0SpinBox"]
    limits = {p.get("name"): float(p.findtext("double")) for p in spin.findall("property")
              if p.get("name") in ("minimum", "maximum")}
    assert (limits["minimum"], limits["maximum"]) == io.B0_RANGE_TESLA


def test_only_the_module_file_sits_at_the_top_of_the_module_folder():
    # Slicer loads every top-level .py of a module folder as a scripted module of that name.
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["QSMReproducibility.py"]


def test_requirements_leave_out_what_slicer_or_slicerradiomics_provide():
    lines = (MODULE_DIR / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    names = {re.split(r"[<>=!~ ]", line.strip())[0].lower() for line in lines
             if line.strip() and not line.startswith("#")}
    assert {"nibabel", "pandas", "pynrrd"} <= names
    assert not names & {"numpy", "scipy", "simpleitk", "pyradiomics", "vtk"}


# Distributions 3D Slicer bundles (numpy, scipy, SimpleITK: its SuperBuild) or SlicerRadiomics brings.
SLICER_PROVIDED = {"numpy", "scipy", "simpleitk", "pyradiomics"}
IMPORT_TO_DISTRIBUTION = {"nrrd": "pynrrd", "radiomics": "pyradiomics", "yaml": "pyyaml",
                          # the reading station's (QSMReproducibilityLib/station)
                          "slicer": "slicer-core", "trame_slicer": "trame-slicer", "trame_server": "trame-server",
                          "vtkmodules": "vtk", "undo_stack": "py-undo-stack"}


def _requirements(lines) -> dict:
    from packaging.requirements import Requirement

    parsed = [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]
    return {r.name.lower(): r for r in parsed}


def _floor(requirement) -> str:
    floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert len(floors) == 1, f"{requirement} states no single lower bound"
    return floors[0]


def _third_party_imports(paths) -> set:
    imported = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    return {IMPORT_TO_DISTRIBUTION.get(name, name).lower() for name in imported
            if name not in sys.stdlib_module_names
            and name not in ("__future__", "QSMReproducibilityLib", "QSMReproducibilityMRML")}


def test_the_station_imports_only_what_its_extra_pins_exactly():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    station = _requirements(extras["station"])
    assert all(str(r.specifier).startswith("==") for r in station.values())        # exact pins
    imported = _third_party_imports((REPO / "QSMReproducibilityLib" / "station").rglob("*.py"))
    assert imported <= set(station), imported - set(station)


def test_requirements_are_what_the_library_imports_at_the_floors_pyproject_states_and_slicer_510_is_tested_on():
    tomllib = pytest.importorskip("tomllib")
    module_requirements = _requirements(
        (MODULE_DIR / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines())
    pyproject = _requirements(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                              ["dependencies"])
    pins = {name: str(next(iter(r.specifier)).version) for name, r in _requirements(
        (REPO / "Testing" / "slicer-5.10-constraints.txt").read_text(encoding="utf-8").splitlines()).items()}

    # The browser reading station (QSMReproducibilityLib/station) is a front of its own with its own extra;
    # Slicer never loads it.
    third_party = _third_party_imports(path for path in (REPO / "QSMReproducibilityLib").rglob("*.py")
                                       if "station" not in path.relative_to(REPO).parts)

    # Inside Slicer pip installs exactly what the library imports beyond what Slicer and SlicerRadiomics bring.
    assert set(module_requirements) == third_party - SLICER_PROVIDED
    assert set(pyproject) == third_party
    # One set of lowest versions: requirements.txt and pyproject.toml agree, and the Slicer 5.10 environment
    # of `make test` (Testing/slicer-5.10-constraints.txt) runs on exactly those versions.
    for name, requirement in pyproject.items():
        if name == "pyradiomics":
            continue
        assert pins[name] == _floor(requirement), name
        if name in module_requirements:
            assert _floor(module_requirements[name]) == _floor(requirement), name


# ---------------------------------------------------------------------------------------------------
# Build files and catalog


def test_module_cmakelists_lists_every_script_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "set(MODULE_NAME QSMReproducibility)" in text
    scripts = {s.replace("${MODULE_NAME}", "QSMReproducibility") for s in _cmake_list(text, "MODULE_PYTHON_SCRIPTS")}
    resources = {s.replace("${MODULE_NAME}", "QSMReproducibility")
                 for s in _cmake_list(text, "MODULE_PYTHON_RESOURCES")}
    on_disk_scripts = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py")
                       if "Testing" not in p.parts and "__pycache__" not in p.parts}
    on_disk_resources = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*")
                         if p.is_file()}
    assert scripts == on_disk_scripts
    assert resources == on_disk_resources
    assert re.search(r"slicerMacroBuildScriptedModule\(.*WITH_GENERIC_TESTS.*\)", text, re.S)
    assert re.search(r"if\(BUILD_TESTING\).*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\).*endif",
                     text, re.S)


def test_extension_cmakelists_has_metadata_dependency_and_library_install():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{field} "[^"]+"\)', text), field
    assert re.search(r'set\(EXTENSION_CATEGORY "Quantification"\)', text)
    assert re.search(r'set\(EXTENSION_DEPENDS "[^"]*\bSlicerRadiomics\b[^"]*"\)', text)
    order = [text.index(s) for s in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                                     "add_subdirectory(QSMReproducibility)",
                                     "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                                     "include(${Slicer_EXTENSION_CPACK})")]
    assert order == sorted(order)
    install = re.search(r"install\(DIRECTORY (\S+)(.*?)\)\n", text, re.S)
    assert install and install.group(1) in ("${QSMREPRO_LIB_DIR}", "${CMAKE_CURRENT_SOURCE_DIR}/QSMReproducibilityLib")
    assert "DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in install.group(2)
    assert 'PATTERN "__pycache__" EXCLUDE' in install.group(2)
    for resource in re.findall(r"\$\{CMAKE_CURRENT_SOURCE_DIR\}/(Resources/\S+)", text):
        assert (REPO / resource).exists(), f"{resource} is installed but missing"
    assert (REPO / "Resources" / "Icons" / "QSMReproducibility.png").exists()


def test_catalog_entry_follows_the_extensions_index_schema():
    entry = json.loads(CATALOG.read_text(encoding="utf-8"))
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_PROPERTIES
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == "Quantification"
    assert entry["build_dependencies"] == ["SlicerRadiomics"]
    assert entry["scm_url"].startswith("https://") and entry["scm_revision"]
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5


def test_icons_are_128_pixel_pngs():
    for path in (MODULE_DIR / "Resources" / "Icons" / "QSMReproducibility.png",
                 REPO / "Resources" / "Icons" / "QSMReproducibility.png"):
        header = path.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(header[16:20], "big") == int.from_bytes(header[20:24], "big") == 128


def test_reading_segment_terminology_resolves_in_the_extension_terminology_file():
    vocabulary = pytest.importorskip("QSMReproducibilityLib.terminology")
    terminology = json.loads((REPO / "Resources" / "QSMReproducibility.term.json").read_text(encoding="utf-8"))
    codes = {(category["CodeValue"], kind["CodeValue"])
             for category in terminology["SegmentationCodes"]["Category"] for kind in category["Type"]}
    tags = vocabulary.reading_tags(observer="obsA", reading=1, case_id="VA-1", session_uid="u-1", status="started")
    specs = [vocabulary.lesion_segment(side, lesion_type, tags) for side in vocabulary.SIDES
             for lesion_type in vocabulary.LESION_TYPES]
    specs.append(vocabulary.csf_segment(tags))
    for spec in specs:
        # Slicer's entry string: context~category~type~type modifier~anatomic context~region~region modifier
        context, category, kind = spec.terminology.split("~")[:3]
        assert context == terminology["SegmentationCategoryTypeContextName"]
        assert (category.split("^")[1], kind.split("^")[1]) in codes, spec.segment_id


def test_every_library_name_the_module_imports_exists():
    """The module imports the library lazily (inside functions); a renamed library name must fail here."""
    import importlib

    missing = []
    for node in ast.walk(ast.parse(MODULE_PY.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("QSMReproducibilityLib"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{node.module}.{alias.name}")
    assert missing == []


# ---- Slicer API use, checked against Slicer's source at v5.10.0 and v5.12.0 ----------------------

_REPO_RAW_URL = re.compile(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(\S+)")


def test_the_screenshot_and_icon_urls_name_files_of_this_repository():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    entry = json.loads(CATALOG.read_text(encoding="utf-8"))
    urls = [url for field in ("SCREENSHOTURLS", "ICONURL")
            for value in re.findall(rf'set\(EXTENSION_{field} "([^"]*)"\)', text) for url in value.split()]
    urls += [url for key in ("screenshoturls", "iconurl") for url in str(entry.get(key, "")).split()]
    for url in urls:
        found = _REPO_RAW_URL.match(url)
        assert found, f"{url}: not a file of this repository"
        assert (REPO / found.group(1)).is_file(), f"{url} points to {found.group(1)}, which does not exist"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == name]


def test_no_protected_qt_method_is_called(module_tree):
    # QAbstractItemView::selectedIndexes is protected (qabstractitemview.h); PythonQt need not expose it.
    assert not _calls(module_tree, "selectedIndexes")
    assert _calls(module_tree, "selectedRows")


def test_the_sample_data_category_is_registered_only_where_slicer_has_the_call(module_tree):
    # SampleDataLogic.registerCustomSampleDataCategory: Modules/Scripted/SampleData/SampleData.py at v5.12.0,
    # absent at v5.10.0.
    calls = _calls(module_tree, "registerCustomSampleDataCategory")
    guards = [n for n in ast.walk(module_tree) if isinstance(n, ast.If)
              and any(isinstance(c, ast.Call) and getattr(c.func, "id", "") == "hasattr"
                      and any(isinstance(a, ast.Constant) and a.value == "registerCustomSampleDataCategory"
                              for a in c.args) for c in ast.walk(n.test))]
    guarded = {id(c) for guard in guards for stmt in guard.body for c in ast.walk(stmt)}
    assert calls and all(id(call) in guarded for call in calls)


def test_startup_registrations_run_each_on_its_own(module_tree):
    startup = next(n for n in module_tree.body if isinstance(n, ast.FunctionDef) and n.name == "_onStartupCompleted")
    tries = [n for n in ast.walk(startup) if isinstance(n, ast.Try)]
    assert len(tries) == 1 and isinstance(tries[0].body[0], ast.Expr)        # one call per try, inside a loop
    assert any(isinstance(n, ast.For) for n in ast.walk(startup))
    names = {n.id for n in ast.walk(startup) if isinstance(n, ast.Name)}
    assert {"registerSampleData", "loadTerminology", "registerReadingLayout"} <= names


def _method(tree: ast.Module, class_name: str, method: str) -> ast.FunctionDef:
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method)


def test_the_segment_editor_node_is_set_before_the_scene_and_refreshed_on_enter(module_tree):
    # Modules/Scripted/SegmentEditor/SegmentEditor.py (v5.10.0, v5.12.0): selectParameterNode() before
    # setMRMLScene(); updateWidgetFromMRML() in enter().
    setup = _method(module_tree, "QSMReproducibilityWidget", "_setupSegmentEditor")
    lines = {ast.unparse(n.func): n.lineno for n in ast.walk(setup) if isinstance(n, ast.Call)}
    assert lines["self._selectSegmentEditorNode"] < lines["self.segmentEditorWidget.setMRMLScene"]
    enter = ast.unparse(_method(module_tree, "QSMReproducibilityWidget", "enter"))
    assert enter.index("_selectSegmentEditorNode") < enter.index("updateWidgetFromMRML")
    select = ast.unparse(_method(module_tree, "QSMReproducibilityWidget", "_selectSegmentEditorNode"))
    assert "mrml.segment_editor_node(" in select


def test_the_self_test_neither_installs_packages_nor_imports_them_directly(module_tree):
    test = next(n for n in module_tree.body if isinstance(n, ast.ClassDef) and n.name == "QSMReproducibilityTest")
    for call in _calls(test, "setupPythonRequirements"):
        assert not any(k.arg == "skipInTesting" and getattr(k.value, "value", True) is False for k in call.keywords)
    imported = {a.name.split(".")[0] for n in ast.walk(test) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(test) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"QSMReproducibilityLib"} | set(sys.stdlib_module_names)
    assert "_isInstalled" in ast.unparse(test)


def test_the_reading_logic_only_calls_the_mrml_reading_core(module_tree):
    logic = ast.unparse(next(n for n in module_tree.body
                             if isinstance(n, ast.ClassDef) and n.name == "QSMReproducibilityLogic"))
    for call in ("mrml.start_reading(", "mrml.finish_reading(", "mrml.close_reading(", ".case_status("):
        assert call in logic
    assert "washout_opens" not in logic and "write_seg_nrrd" not in logic
