"""What the GeoRSIC algorithms share: group, icon, flags, the backend check, and the bridge from
Processing feedback (progress, cancel) and backend errors to QGIS."""

from __future__ import annotations

import contextlib
import os
import traceback
import warnings

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .. import dependencies

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", "georsic.svg")

#: Device choices shown to the user, and the value the backend gets for each.
DEVICE_LABELS = ("Automatic (GPU when available, else CPU)", "CPU", "GPU (CUDA)")
DEVICE_VALUES = ("auto", "cpu", "cuda")

CANCELLED_MESSAGE = "Cancelled by the user; no output file was written."


class GeorsicAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set name/displayName/_HELP and implement initAlgorithm and
    processAlgorithm."""

    _HELP = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("GeoRSIC", text)

    def createInstance(self):
        return type(self)()

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def flags(self):
        return (
            super().flags()
            | QgsProcessingAlgorithm.FlagSupportsBatch
            | QgsProcessingAlgorithm.FlagCanCancel
        )

    def shortHelpString(self) -> str:
        text = self.tr(self._HELP)
        missing = dependencies.missing_modules()
        if missing:
            message = html_escape(dependencies.install_message(missing))
            text += f"<p><b>Not ready:</b> {message}</p>"
        return text

    def helpUrl(self) -> str:
        return "https://github.com/georsic/georsic/blob/main/docs/plugin.md"

    def canExecute(self):
        missing = dependencies.missing_modules()
        if missing:
            return False, dependencies.install_message(missing)
        return True, ""

    def device_parameter(self, name: str = "DEVICE") -> QgsProcessingParameterEnum:
        """The processor to run on (advanced): automatic, CPU or a CUDA GPU."""
        device = QgsProcessingParameterEnum(
            name,
            self.tr("Device"),
            options=[self.tr(label) for label in DEVICE_LABELS],
            defaultValue=0,
        )
        device.setFlags(device.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return device

    def archive_parameter(self, name: str) -> QgsProcessingParameterFile:
        """The input parameter of an algorithm that reads a GeoRSIC archive (.grsc)."""
        return QgsProcessingParameterFile(
            name,
            self.tr("Input archive"),
            behavior=QgsProcessingParameterFile.File,
            extension="grsc",
        )

    # -- running the backend -------------------------------------------------------------------

    @staticmethod
    def load_backend():
        return dependencies.load_backend()

    def workers_parameter(self, name: str = "WORKERS") -> QgsProcessingParameterNumber:
        """Local Dask workers (advanced): 0 codes the tiles in the QGIS process."""
        param = QgsProcessingParameterNumber(
            name,
            self.tr("Local worker processes (0: in this process)"),
            type=QgsProcessingParameterNumber.Integer,
            defaultValue=0,
            minValue=0,
            maxValue=256,
        )
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return param

    def call_on_workers(self, georsic, func, feedback, workers: int, *args, **kwargs):
        """:meth:`call_backend`, on a local Dask cluster of ``workers`` processes when > 0."""
        if workers <= 0:
            return self.call_backend(georsic, func, feedback, *args, **kwargs)
        import multiprocessing
        import sys

        if not os.path.basename(sys.executable).startswith("python"):  # QGIS desktop
            python = os.path.join(sys.exec_prefix, "bin", "python3")
            if os.path.exists(python):
                multiprocessing.set_executable(python)
        from georsic.cluster import connect

        try:
            with connect(workers, quiet=True) as client:
                if feedback is not None:
                    feedback.pushInfo(self.tr("Local Dask cluster of {} worker(s), dashboard "
                                              "{}").format(workers, client.dashboard_link))
                return self.call_backend(georsic, func, feedback, *args, client=client,
                                         **kwargs)
        except georsic.errors.GeorsicError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def call_backend(self, georsic, func, feedback, *args, **kwargs):
        """Call ``func(*args, **kwargs, progress=..., cancel=...)`` and turn every failure into a
        QgsProcessingException a GIS analyst can act on."""
        feedback = feedback if feedback is not None else QgsProcessingFeedback()
        announced = []

        def progress(done: int, total: int) -> None:
            if not announced and total:
                announced.append(True)
                feedback.pushInfo(self.tr("{} tile(s) to process").format(total))
            feedback.setProgress(100.0 * done / total if total else 0.0)

        if feedback.isCanceled():
            raise QgsProcessingException(self.tr(CANCELLED_MESSAGE))
        errors = georsic.errors
        try:
            with _reported_warnings(errors.GeorsicWarning, feedback):
                return func(*args, progress=progress, cancel=feedback.isCanceled, **kwargs)
        except errors.Cancelled as exc:
            raise QgsProcessingException(self.tr(CANCELLED_MESSAGE)) from exc
        except errors.GeorsicError as exc:
            raise QgsProcessingException(str(exc)) from exc
        except ModuleNotFoundError as exc:
            raise QgsProcessingException(
                dependencies.install_message([], detail=str(exc))
            ) from exc
        except MemoryError as exc:
            raise QgsProcessingException(_OUT_OF_MEMORY) from exc
        except Exception as exc:  # noqa: BLE001 - the last resort must not crash QGIS
            if "out of memory" in str(exc).lower():
                raise QgsProcessingException(_OUT_OF_MEMORY) from exc
            feedback.reportError(traceback.format_exc(), fatalError=False)
            raise QgsProcessingException(
                self.tr(
                    "GeoRSIC failed unexpectedly ({}: {}). No output was written. "
                    "Please report this, with the log above, to the GeoRSIC issue tracker."
                ).format(type(exc).__name__, exc)
            ) from exc


@contextlib.contextmanager
def _reported_warnings(category, feedback):
    """Each backend warning of ``category`` (something of the source not kept, in one line,
    as the CLI prints it) goes to the Processing log; other warnings are shown as usual."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", category)
            yield
    finally:  # after catch_warnings: showwarning shows again
        for warning in caught:
            if issubclass(warning.category, category):
                feedback.reportError(str(warning.message), fatalError=False)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename,
                                     warning.lineno)


_OUT_OF_MEMORY = (
    "GeoRSIC ran out of memory. Choose a smaller tile size (advanced parameters) "
    "or run on the CPU instead of the GPU."
)


def html_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")
    )
