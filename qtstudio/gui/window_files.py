"""The window's file handling: recent files, drag and drop, recipe open and save."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog

RECIPE_FILTER = "Recipes (*.json);;All files (*)"
IMATRIX_FILTER = "Importance matrices (*.gguf *.dat);;All files (*)"
MAX_RECENT = 10


class FilesMixin:
    """Mixed into MainWindow; uses its document, undo stack, status bar and open_model."""

    # ---- recent files and drops ---------------------------------------------------------------
    def _settings(self) -> QSettings:
        return QSettings()

    def recent_files(self) -> list[str]:
        value = self._settings().value("recentFiles", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember(self, path: Path) -> None:
        p = str(Path(path).resolve())
        files = [f for f in self.recent_files() if f != p]
        files.insert(0, p)
        s = self._settings()
        s.setValue("recentFiles", files[:MAX_RECENT])
        s.setValue("lastDir", str(Path(p).parent))

    def _last_dir(self) -> str:
        return str(self._settings().value("lastDir", str(Path.home())))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        if not files:
            act = self.recent_menu.addAction("(none yet)")
            act.setEnabled(False)
            return
        for i, f in enumerate(files):
            act = self.recent_menu.addAction(f"&{(i + 1) % 10} {f}")
            act.triggered.connect(lambda _c=False, f=f: self.open_model(f))
        self.recent_menu.addSeparator()
        self.recent_menu.addAction("Clear list",
                                   lambda: self._settings().setValue("recentFiles", []))

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.suffix.lower() == ".json" and self.doc is not None and \
                        not path.name.endswith(".index.json") and _looks_like_recipe(path):
                    self.load_recipe(path)
                else:
                    self.open_model(path)
                event.acceptProposedAction()
                return

    # ================================================================ importance matrix =====
    def load_imatrix_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load importance matrix", self._last_dir(),
                                              IMATRIX_FILTER)
        if path:
            self.load_imatrix(path)

    def load_imatrix(self, path: str | Path) -> bool:
        """Read a llama.cpp importance matrix; quantize, optimize and GGUF export use it."""
        from qtstudio.formats.imatrix import load_imatrix

        try:
            im = load_imatrix(path)
        except Exception as exc:  # ImatrixError names the file and the problem
            self.show_error(f"Cannot load importance matrix {path}", exc)
            return False
        self.imatrix = im
        if self.doc is not None:
            self.doc.set_has_imatrix(True)
        name = Path(path).name
        self.imatrix_label.setText(f"imatrix: {name} ({len(im)} tensors)")
        self.imatrix_label.setToolTip(str(path))
        self.imatrix_label.show()
        self.statusBar().showMessage(f"Loaded importance matrix {path}: {len(im)} tensors, "
                                     f"{im.chunk_count} chunks", 6000)
        return True

    # ================================================================ recipe files ==========
    def open_recipe_dialog(self) -> None:
        if self.doc is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open recipe", self._last_dir(),
                                              RECIPE_FILTER)
        if path:
            self.load_recipe(path)

    def load_recipe(self, path: str | Path) -> bool:
        from qtstudio.core.recipe import Recipe

        if self.doc is None:
            return False
        try:
            recipe = Recipe.load(path)
            after = recipe.to_dict()
            self.push_recipe(after, f"Load recipe {Path(path).name}")
        except Exception as exc:
            self.show_error(f"Cannot load recipe {path}", exc)
            return False
        self.doc.recipe_path = Path(path)
        self.undo_stack.setClean()
        self.statusBar().showMessage(f"Loaded recipe {path}", 5000)
        return True

    def save_recipe(self) -> bool:
        if self.doc is None:
            return False
        if self.doc.recipe_path is None:
            return self.save_recipe_as()
        return self._write_recipe(self.doc.recipe_path)

    def save_recipe_as(self) -> bool:
        if self.doc is None:
            return False
        start = str(self.doc.recipe_path or Path(self._last_dir()) / "recipe.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save recipe", start, RECIPE_FILTER)
        if not path:
            return False
        return self._write_recipe(Path(path))

    def _write_recipe(self, path: Path) -> bool:
        assert self.doc is not None
        try:
            self.doc.recipe.save(path)
        except Exception as exc:
            self.show_error(f"Cannot save recipe to {path}", exc)
            return False
        self.doc.recipe_path = path
        self.undo_stack.setClean()
        self.statusBar().showMessage(f"Saved recipe to {path}", 5000)
        self._update_title()
        return True


def _looks_like_recipe(path: Path) -> bool:
    """A dropped .json is a recipe when it has recipe keys (a config.json is not)."""
    import json

    try:
        if path.stat().st_size > 4 * 1024 * 1024:
            return False
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and bool({"rules", "overrides", "preset"} & set(doc))
