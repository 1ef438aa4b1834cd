"""Run ▸ Cluster…: the Ray cluster address the window's jobs run on (empty: this machine).

The address is kept in the application settings and handed to quantize, optimize, what-if and
GGUF export as their ``executor`` argument; those jobs run in a child process (see
process_job.py), which connects to the cluster itself. Workers must read the open checkpoint at
the same path (shared storage; docs/ray.md).
"""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from qtstudio.jobs.executor import RAY_INSTALL_HINT, ray_available

from .dialog_parts import body_layout, ok_cancel_buttons

SETTINGS_KEY = "cluster/rayAddress"


def cluster_address() -> str | None:
    """The saved address, or None to run on this machine (also when Ray is not installed)."""
    value = str(QSettings().value(SETTINGS_KEY, "") or "").strip()
    return value if value and ray_available() else None


def set_cluster_address(address: str) -> None:
    QSettings().setValue(SETTINGS_KEY, address.strip())


def check_address(text: str) -> str | None:
    """Why ``text`` is not an address the jobs can use, or None when it is (empty is fine)."""
    t = text.strip()
    if not t or t == "auto":
        return None
    hostport = t.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if t.split("://", 1)[0] not in (t, "ray") or not sep or not host or not port.isdigit():
        return "expected auto, HOST:PORT or ray://HOST:PORT"
    return None


class ClusterSettingsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Cluster")
        self.address = QLineEdit(str(QSettings().value(SETTINGS_KEY, "") or ""))
        self.address.setObjectName("clusterAddress")
        self.address.setPlaceholderText("empty: this machine · auto · HOST:6379 · "
                                        "ray://HOST:10001")
        self.address.setClearButtonEnabled(True)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Ray cluster address", self.address)
        note = QLabel("Quantize, Optimize, What-if and GGUF export run their per-tensor work as "
                      "tasks on this cluster. Every node must read the open model at the same "
                      "path.")
        note.setWordWrap(True)
        self.buttons = ok_cancel_buttons(self)
        body_layout(self, form, note, self.problem, self.buttons)
        self.address.textChanged.connect(self._check)
        self._check()

    def _check(self) -> None:
        text = self.address.text()
        why = check_address(text)
        if why is None and text.strip() and not ray_available():
            why = RAY_INSTALL_HINT.replace("--ray needs", "A cluster needs")
        self.problem.setText(why or "")
        self.problem.setVisible(bool(why))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(why is None)

    def accept(self) -> None:
        if check_address(self.address.text()) is None:
            set_cluster_address(self.address.text())
        super().accept()
