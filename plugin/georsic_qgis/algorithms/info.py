"""Archive information: what a GeoRSIC archive holds (raster metadata, tiles, bitrate, model)."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
)

from .base import GeorsicAlgorithm, html_escape

#: Processing outputs filled from Archive attributes: (output name, attribute, label, is number).
FIELDS = (
    ("WIDTH", "width", "Width (pixels)", True),
    ("HEIGHT", "height", "Height (pixels)", True),
    ("BANDS", "count", "Bands", True),
    ("DTYPE", "dtype", "Data type", False),
    ("TILES", "tile_count", "Tiles", True),
    ("BPP", "bpp", "Bits per pixel", True),
    ("MODEL_ID", "model_id", "Model", False),
    ("CRS", "crs", "CRS (WKT)", False),
)


class ArchiveInfoAlgorithm(GeorsicAlgorithm):
    INPUT = "INPUT"
    VERIFY = "VERIFY"
    OUTPUT = "OUTPUT"
    TEXT = "TEXT"
    PROBLEMS = "PROBLEMS"

    _HELP = (
        "<p>Reports what a GeoRSIC archive (<i>.grsc</i>) holds without decoding it: raster size, "
        "bands and data type, CRS and extent, tile grid, bitrate (bits per pixel), and the "
        "model (and its weights) needed to decode it.</p>"
        "<h3>Parameters</h3>"
        "<dl><dt><b>Check every tile</b></dt><dd>Also reads every tile and checks its checksum, "
        "and that the exact model weights the archive needs are installed (what "
        "<code>georsic verify</code> does); each problem is reported.</dd></dl>"
        "<h3>Outputs</h3>"
        "<dl>"
        "<dt><b>Report</b></dt><dd>An HTML page, shown in the Results Viewer.</dd>"
        "<dt><b>TEXT</b>, <b>WIDTH</b>, <b>HEIGHT</b>, <b>BANDS</b>, <b>DTYPE</b>, <b>TILES</b>, "
        "<b>BPP</b>, <b>MODEL_ID</b>, <b>CRS</b></dt><dd>The same facts as values for models, "
        "batch runs and <code>qgis_process run georsic:info -- INPUT=a.grsc</code>.</dd>"
        "<dt><b>PROBLEMS</b></dt><dd>With the check: how many problems were found (0: "
        "intact).</dd>"
        "</dl>"
    )

    def name(self) -> str:
        return "info"

    def displayName(self) -> str:
        return self.tr("Archive information")

    def tags(self):
        return self.tr("info,information,metadata,describe,archive,grsc,bpp").split(",")

    def initAlgorithm(self, config=None):
        self.addParameter(self.archive_parameter(self.INPUT))
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.VERIFY, self.tr("Check every tile and the weights it needs"),
                defaultValue=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT,
                self.tr("Report"),
                fileFilter="HTML files (*.html *.HTML)",
                optional=True,
                createByDefault=True,
            )
        )
        self.addOutput(QgsProcessingOutputString(self.TEXT, self.tr("Report as text")))
        self.addOutput(QgsProcessingOutputNumber(self.PROBLEMS, self.tr("Problems found")))
        for name, _attr, label, is_number in FIELDS:
            cls = QgsProcessingOutputNumber if is_number else QgsProcessingOutputString
            self.addOutput(cls(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        path = self.parameterAsFile(parameters, self.INPUT, context)
        if not path or not os.path.isfile(path):
            raise QgsProcessingException(
                self.tr("The archive file does not exist: {}").format(path)
            )
        georsic = self.load_backend()
        archive = self.call_backend(georsic, _open, feedback, georsic, path)
        verify = self.parameterAsBoolean(parameters, self.VERIFY, context)
        try:
            problems = (self.call_backend(georsic, archive.verify, feedback) if verify
                        else None)
            text = archive.describe()
            values = {name: getattr(archive, attr, None) for name, attr, _label, _n in FIELDS}
            bounds = getattr(archive, "bounds", None)
        except georsic.errors.GeorsicError as exc:
            raise QgsProcessingException(str(exc)) from exc
        finally:
            close = getattr(archive, "close", None)
            if callable(close):
                close()
        feedback.pushInfo(text)
        if problems is not None:
            for problem in problems:
                feedback.reportError(str(problem))
            text += "\nchecked:   " + (f"{len(problems)} problem(s)" if problems else
                                        "every tile intact, weights installed")

        results = {self.TEXT: text}
        if problems is not None:
            results[self.PROBLEMS] = len(problems)
        for name, value in values.items():
            if value is not None:
                results[name] = value if isinstance(value, (int, float)) else str(value)

        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if output:
            try:
                with open(output, "w", encoding="utf-8") as f:
                    f.write(_html_report(path, text, values, bounds))
            except OSError as exc:
                raise QgsProcessingException(
                    self.tr("Cannot write the report {}: {}").format(output, exc.strerror)
                ) from exc
            results[self.OUTPUT] = output
        return results


def _open(georsic, path, progress=None, cancel=None):
    """georsic.open does not report progress; accept and ignore the callbacks."""
    return georsic.open(path)


def _html_report(path, text, values, bounds) -> str:
    rows = []
    for name, _attr, label, _n in FIELDS:
        value = values.get(name)
        if value is None or name == "CRS":
            continue
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        rows.append(f"<tr><th>{html_escape(label)}</th><td>{html_escape(shown)}</td></tr>")
    if bounds is not None:
        rows.append(
            "<tr><th>Bounds (left, bottom, right, top)</th><td>"
            + html_escape(", ".join(f"{v:.10g}" for v in tuple(bounds)))
            + "</td></tr>"
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>GeoRSIC archive {html_escape(os.path.basename(path))}</title></head><body>"
        f"<h2>GeoRSIC archive: {html_escape(path)}</h2>"
        f"<table border=\"1\" cellpadding=\"3\">{''.join(rows)}</table>"
        f"<h3>Full report</h3><pre>{text.replace('&', '&amp;').replace('<', '&lt;')}</pre>"
        "</body></html>\n"
    )
