"""Decompress archive: a GeoRSIC archive (.grsc) -> a GeoTIFF, whole or a region of it."""

from __future__ import annotations

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .base import DEVICE_VALUES, GeorsicAlgorithm


class DecompressArchiveAlgorithm(GeorsicAlgorithm):
    INPUT = "INPUT"
    EXTENT = "EXTENT"
    PRIOR = "PRIOR"
    FIDELITY = "FIDELITY"
    DEVICE = "DEVICE"
    WORKERS = "WORKERS"
    OVERVIEWS = "OVERVIEWS"
    COG = "COG"
    IGNORE_ERRORS = "IGNORE_ERRORS"
    OUTPUT = "OUTPUT"

    OVERVIEW_LABELS = ("As in the compressed raster", "Automatic (down to 256 pixels)", "None")
    OVERVIEW_VALUES = ("source", "auto", "none")

    _HELP = (
        "<p>Restores a GeoRSIC archive (<i>.grsc</i>) as a GeoTIFF with the original CRS, "
        "geotransform, nodata and metadata, pixel-aligned with the raster that was "
        "compressed. Only the tiles that cover the requested extent are decoded.</p>"
        "<h3>Parameters</h3>"
        "<dl>"
        "<dt><b>Input archive</b></dt><dd>A .grsc file written by <i>Compress raster</i> "
        "or the <code>georsic</code> command.</dd>"
        "<dt><b>Extent</b> (optional)</dt><dd>Decode only this region. It may be given in any "
        "CRS (map canvas, a layer's extent, or typed); it is reprojected to the archive's CRS "
        "and snapped outwards to whole pixels. Leave empty for the full raster.</dd>"
        "<dt><b>Codebook prior</b></dt><dd>Sharpens textures lost at low bitrates with a learned "
        "codebook of remote-sensing patterns (Code-RSIC). Off gives the plain decoded image, "
        "which has the best PSNR.</dd>"
        "<dt><b>Prior fidelity</b></dt><dd>With the prior on: 0 trusts the prior most (sharper), "
        "1 stays closest to the decoded image.</dd>"
        "<dt><b>Overviews</b></dt><dd>Pyramid levels of the output, built from the decoded "
        "pixels (average): those the compressed raster had (none if it had none), automatic "
        "levels down to 256 pixels, or none.</dd>"
        "<dt><b>Cloud Optimized GeoTIFF</b></dt><dd>Writes the output in GDAL's COG layout, "
        "for serving from object storage or a web server.</dd>"
        "<dt><b>Ignore damaged tiles</b> (advanced)</dt><dd>Write a tile that is damaged or "
        "missing (an archive cut short, say) as no-data instead of stopping; the log names "
        "each tile lost, and so does the output's GEORSIC_LOST_TILES tag.</dd>"
        "<dt><b>Device</b> (advanced)</dt><dd>Automatic uses a CUDA GPU when one is "
        "available.</dd>"
        "<dt><b>Output raster</b></dt><dd>The GeoTIFF to write; it is added to the project when "
        "run from the toolbox. A failed or cancelled run leaves no file.</dd>"
        "</dl>"
    )

    def name(self) -> str:
        return "decompress"

    def displayName(self) -> str:
        return self.tr("Decompress archive")

    def tags(self):
        return self.tr("decompress,decode,restore,archive,grsc,geotiff,raster").split(",")

    def initAlgorithm(self, config=None):
        self.addParameter(self.archive_parameter(self.INPUT))
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, self.tr("Extent to decode (empty = whole raster)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.PRIOR, self.tr("Use the codebook prior (sharper at low bitrates)"),
                defaultValue=False,
            )
        )
        fidelity = QgsProcessingParameterNumber(
            self.FIDELITY,
            self.tr("Prior fidelity (0 = sharpest, 1 = closest to the decoded image)"),
            type=QgsProcessingParameterNumber.Double,
            defaultValue=0.75,  # georsic.defaults.DEFAULT_FIDELITY (a test checks they agree)
            minValue=0.0,
            maxValue=1.0,
        )
        fidelity.setMetadata({"widget_wrapper": {"decimals": 2}})
        self.addParameter(fidelity)
        self.addParameter(
            QgsProcessingParameterEnum(
                self.OVERVIEWS,
                self.tr("Overviews (pyramids) of the output"),
                options=[self.tr(label) for label in self.OVERVIEW_LABELS],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.COG, self.tr("Write a Cloud Optimized GeoTIFF (COG)"), defaultValue=False
            )
        )
        ignore = QgsProcessingParameterBoolean(
            self.IGNORE_ERRORS, self.tr("Ignore damaged tiles (write them as no-data)"),
            defaultValue=False,
        )
        ignore.setFlags(ignore.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(ignore)
        self.addParameter(self.device_parameter(self.DEVICE))
        self.addParameter(self.workers_parameter(self.WORKERS))
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Output raster"))
        )

    def processAlgorithm(self, parameters, context, feedback):
        archive = self.parameterAsFile(parameters, self.INPUT, context)
        if not archive or not os.path.isfile(archive):
            raise QgsProcessingException(
                self.tr("The archive file does not exist: {}").format(archive)
            )
        prior = self.parameterAsBoolean(parameters, self.PRIOR, context)
        fidelity = self.parameterAsDouble(parameters, self.FIDELITY, context)
        device = DEVICE_VALUES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if os.path.splitext(output)[1].lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(
                self.tr("GeoRSIC writes GeoTIFF: choose an output file ending in .tif "
                        "(got {}).").format(output)
            )

        overviews = self.OVERVIEW_VALUES[self.parameterAsEnum(parameters, self.OVERVIEWS, context)]
        cog = self.parameterAsBoolean(parameters, self.COG, context)
        # overwrite: QGIS's convention, the user chose the output in a file dialog
        lost = []  # what the backend says of each tile it could not decode
        kwargs = {"prior": prior, "fidelity": fidelity, "device": device, "overviews": overviews,
                  "cog": cog, "overwrite": True, "errors": lost,
                  "ignore_errors": self.parameterAsBoolean(parameters, self.IGNORE_ERRORS,
                                                           context)}
        bounds, bounds_crs = self._bounds(parameters, context)
        if bounds is not None:
            kwargs["bounds"] = bounds
            kwargs["bounds_crs"] = bounds_crs
            feedback.pushInfo(
                self.tr("Decoding the region {} ({})").format(
                    ", ".join(f"{v:.10g}" for v in bounds), bounds_crs or self.tr("archive CRS")
                )
            )

        georsic = self.load_backend()
        workers = self.parameterAsInt(parameters, self.WORKERS, context)
        self.call_on_workers(georsic, georsic.decompress, feedback, workers, archive, output,
                             **kwargs)
        for line in georsic.errors.lost_tiles_report(lost):  # the lines the CLI prints
            feedback.reportError(line, fatalError=False)
        return {self.OUTPUT: output}

    def _bounds(self, parameters, context):
        """(left, bottom, right, top) and its CRS as a string, or (None, None) for no extent."""
        if parameters.get(self.EXTENT) in (None, ""):
            return None, None
        rect = self.parameterAsExtent(parameters, self.EXTENT, context)
        if rect is None or rect.isNull() or rect.isEmpty():
            return None, None
        crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        return (
            (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
            crs_string(crs),
        )


def crs_string(crs: QgsCoordinateReferenceSystem | None) -> str | None:
    """An EPSG code where there is one, else WKT2; None (archive CRS) for an invalid CRS."""
    if crs is None or not crs.isValid():
        return None
    authid = crs.authid()
    if authid.upper().startswith("EPSG:"):
        return authid
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)
