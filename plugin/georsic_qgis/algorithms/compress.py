"""Compress raster: a GDAL raster (layer or file) -> a GeoRSIC archive (.grsc)."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import DEVICE_VALUES, GeorsicAlgorithm

ARCHIVE_FILTER = "GeoRSIC archive (*.grsc *.GRSC)"
QUALITY, TARGET_PSNR, TARGET_BPP = "QUALITY", "TARGET_PSNR", "TARGET_BPP"


class CompressRasterAlgorithm(GeorsicAlgorithm):
    INPUT = "INPUT"
    QUALITY = QUALITY
    TARGET_PSNR = TARGET_PSNR
    TARGET_BPP = TARGET_BPP
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    REFINE = "REFINE"
    DEVICE = "DEVICE"
    WORKERS = "WORKERS"
    MAX_ERROR = "MAX_ERROR"
    LOSSLESS = "LOSSLESS"
    EXACT = "EXACT"
    OUTPUT = "OUTPUT"

    _HELP = (
        "<p>Compresses a raster into a GeoRSIC archive (<i>.grsc</i>) with a learned image codec. "
        "The archive keeps the CRS, geotransform, nodata, band descriptions and metadata, so "
        "<i>Decompress archive</i> restores a GeoTIFF that lies exactly on the original.</p>"
        "<h3>Parameters</h3>"
        "<dl>"
        "<dt><b>Input raster</b></dt><dd>A raster layer or any file GDAL can read "
        "(GeoTIFF, JPEG 2000, ...). Layers from web services must be exported to a file first.</dd>"
        "<dt><b>Quality</b></dt><dd>0 (smallest file) to 7 (best fidelity), fractional values "
        "allowed. On 10 cm aerial RGB the default 5 gives about 0.45-0.6 bits per pixel, "
        "0 about 0.04-0.05, 7 about 0.8-1.</dd>"
        "<dt><b>Target PSNR</b> or <b>Target bit rate</b> (optional)</dt><dd>Instead of the "
        "quality: the lowest quality whose PSNR (dB, against this raster) reaches the target, "
        "or the highest whose tiles stay within the bits per pixel given. GeoRSIC finds it "
        "by coding the raster, or windows spread over a large one, up to eight times before "
        "compressing; the log says the quality chosen and warns when the target is out of "
        "reach (the nearest quality is then used).</dd>"
        "<dt><b>Max error</b> or <b>Lossless</b> (optional)</dt><dd>Instead of the quality: "
        "every valid pixel of every band decodes within this error of the source, in the "
        "band's units (one value, or one per band separated by commas); lossless is bit-exact. "
        "Integer rasters of up to 16 bits; the base is chosen by the encoder, tiles do not "
        "overlap and the archive is much larger than a lossy one.</dd>"
        "<dt><b>Tile size</b> (advanced)</dt><dd>The raster is coded in square tiles of this many "
        "pixels. Larger tiles compress slightly better and need more memory; progress and "
        "Cancel act once per tile.</dd>"
        "<dt><b>Tile overlap</b> (advanced)</dt><dd>Pixels shared by neighbouring tiles and "
        "blended when decoding, so tile seams do not show.</dd>"
        "<dt><b>Encoder refinement steps</b> (advanced)</dt><dd>0 (default) codes each tile "
        "in one pass. A few steps of optimisation per tile give a smaller file at the same "
        "quality, at the price of a much slower compression; decoding is unchanged.</dd>"
        "<dt><b>Device</b> (advanced)</dt><dd>Automatic uses a CUDA GPU when one is available. "
        "An archive made on either decodes on the other (a GPU and a CPU decode may differ "
        "by a fraction of a grey level).</dd>"
        "<dt><b>Output archive</b></dt><dd>The .grsc file to write. It is written only when the "
        "run succeeds: a failed or cancelled run leaves no file.</dd>"
        "</dl>"
        "<p>Runs in batch mode (right-click &gt; Execute as Batch Process) and from the shell: "
        "<code>qgis_process run georsic:compress -- INPUT=in.tif QUALITY=5 "
        "OUTPUT=out.grsc</code>.</p>"
    )

    def name(self) -> str:
        return "compress"

    def displayName(self) -> str:
        return self.tr("Compress raster")

    def tags(self):
        return self.tr("compress,compression,archive,grsc,learned,codec,geotiff,raster").split(",")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")))
        for param in quality_parameters(self.tr):
            self.addParameter(param)
        advanced = [
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                self.tr("Tile size (pixels)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=1024,  # georsic.DEFAULT_TILE_SIZE (the backend loads lazily)
                minValue=64,
                maxValue=4096,
            ),
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Tile overlap (pixels)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=16,
                minValue=0,
                maxValue=1024,
            ),
            QgsProcessingParameterNumber(
                self.REFINE,
                self.tr("Encoder refinement steps (slower, smaller file)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
                maxValue=200,
            ),
            self.device_parameter(self.DEVICE),
            QgsProcessingParameterBoolean(
                self.EXACT,
                self.tr("Exact decoding: the same pixels on every machine, each tile's digest "
                        "stored (slower)"),
                defaultValue=False,
            ),
        ]
        self.addParameter(QgsProcessingParameterString(
            self.MAX_ERROR, self.tr("Max error per pixel (band units; empty: lossy)"),
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.LOSSLESS, self.tr("Lossless (bit-exact)"), defaultValue=False))
        self.addParameter(self.workers_parameter(self.WORKERS))
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, self.tr("Output archive"), fileFilter=ARCHIVE_FILTER
            )
        )
        self.addOutput(QgsProcessingOutputNumber("BPP", self.tr("Bits per pixel")))
        self.addOutput(QgsProcessingOutputNumber("QUALITY_USED", self.tr("Quality used")))
        self.addOutput(QgsProcessingOutputNumber("TILES", self.tr("Number of tiles")))
        self.addOutput(QgsProcessingOutputNumber("BYTES", self.tr("Archive size (bytes)")))

    def processAlgorithm(self, parameters, context, feedback):
        source = input_source(self, self.INPUT, parameters, context)
        quality = self.parameterAsDouble(parameters, self.QUALITY, context)
        tile_size = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        refine = self.parameterAsInt(parameters, self.REFINE, context)
        device = DEVICE_VALUES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output:
            raise QgsProcessingException(self.tr("Choose an output archive file (.grsc)."))
        if not os.path.splitext(output)[1]:
            output += ".grsc"

        targets = quality_targets(self, parameters, context)
        bound = self._bound(parameters, context)
        if bound:
            targets, quality = {**bound}, None
        exact = {} if bound or not self.parameterAsBool(parameters, self.EXACT, context) \
            else {"exact": True}
        georsic = self.load_backend()
        feedback.pushInfo(
            self.tr("Compressing {} at {} (tiles of {} px, overlap {} px, device {})").format(
                source,
                self.tr("a bounded error") if bound
                else self.tr("the quality that meets the target") if targets
                else self.tr("quality {:g}").format(quality),
                tile_size, overlap, device,
            )
        )
        summary = self.call_on_workers(
            georsic,
            georsic.compress,
            feedback,
            self.parameterAsInt(parameters, self.WORKERS, context),
            source,
            output,
            quality=None if targets or bound else quality,
            **targets,
            **exact,
            tile_size=tile_size,
            overlap=overlap,
            refine=refine,
            device=device,
            overwrite=True,  # QGIS's convention: the user chose the output in a file dialog
        )
        self._report_fit(getattr(summary, "fit", None), feedback)
        results = {self.OUTPUT: output, "QUALITY_USED": getattr(summary, "quality", quality)}
        for key, attrs in (
            ("BPP", ("bpp",)),
            ("TILES", ("tiles", "tile_count")),
            ("BYTES", ("bytes",)),
        ):
            value = _first_attr(summary, attrs)
            if isinstance(value, (int, float)):
                results[key] = value
        if "BPP" in results:
            feedback.pushInfo(
                self.tr("Wrote {} ({} tile(s), {:.3f} bits per pixel)").format(
                    output, results.get("TILES", "?"), results["BPP"]
                )
            )
        return results

    def _bound(self, parameters, context) -> dict:
        """``max_error`` or ``lossless`` for georsic.compress, {} for a lossy archive."""
        if self.parameterAsBool(parameters, self.LOSSLESS, context):
            return {"lossless": True}
        text = (self.parameterAsString(parameters, self.MAX_ERROR, context) or "").strip()
        if not text:
            return {}
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise QgsProcessingException(self.tr(
                "Max error takes a number or one per band separated by commas, not {}")
                .format(text)) from None
        return {"max_error": values[0] if len(values) == 1 else values}

    def _report_fit(self, fit, feedback) -> None:
        if fit is None:
            return
        if fit.reached:
            feedback.pushInfo(
                self.tr("Quality {:.2f} met the target ({:.2f} dB at {:.4f} bits per pixel)")
                .format(fit.quality, fit.psnr, fit.bpp)
            )
        else:
            feedback.reportError(
                self.tr("The target is out of reach: the nearest quality, {:g}, gives {:.2f} dB "
                        "at {:.4f} bits per pixel.").format(fit.quality, fit.psnr, fit.bpp),
                fatalError=False,
            )


def quality_parameters(tr) -> list:
    """The quality, and the optional targets that replace it (compress and estimate)."""
    quality = QgsProcessingParameterNumber(
        QUALITY,
        tr("Quality (0 = smallest file, 7 = best fidelity)"),
        type=QgsProcessingParameterNumber.Double,
        defaultValue=5.0,
        minValue=0.0,
        maxValue=7.0,
    )
    quality.setMetadata({"widget_wrapper": {"decimals": 2}})
    targets = [
        QgsProcessingParameterNumber(
            name,
            tr(label),
            type=QgsProcessingParameterNumber.Double,
            optional=True,
            minValue=0.001,
            maxValue=maximum,
        )
        for name, label, maximum in (
            (TARGET_PSNR, "Target PSNR (dB, optional: replaces the quality)", 100.0),
            (TARGET_BPP, "Target bit rate (bits per pixel, optional: replaces the quality)",
             64.0),
        )
    ]
    return [quality, *targets]


def quality_targets(alg, parameters, context) -> dict:
    """``target_psnr`` or ``target_bpp`` for the backend, when one is given."""
    targets = {}
    for name, key in ((TARGET_PSNR, "target_psnr"), (TARGET_BPP, "target_bpp")):
        if parameters.get(name) not in (None, ""):
            targets[key] = alg.parameterAsDouble(parameters, name, context)
    if len(targets) > 1:
        raise QgsProcessingException(alg.tr("Give a target PSNR or a target bit rate, not both."))
    return targets


def _first_attr(obj, names):
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def input_source(alg, name, parameters, context) -> str:
    """The file behind the raster layer parameter ``name``, or a clear error."""
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(
            alg.tr("The input raster could not be opened: {}").format(parameters.get(name))
        )
    return raster_source(layer, alg.tr)


def raster_source(layer, tr) -> str:
    """The GDAL dataset name behind a raster layer, or a clear error for non-file layers."""
    provider = layer.providerType()
    if provider != "gdal":
        raise QgsProcessingException(
            tr(
                "Layer '{}' comes from the '{}' data provider; GeoRSIC compresses raster files "
                "that GDAL can read. Save the layer as a GeoTIFF first (Raster > Conversion > "
                "Translate, or right-click > Export > Save As...) and compress that file."
            ).format(layer.name(), provider)
        )
    return layer.source()
