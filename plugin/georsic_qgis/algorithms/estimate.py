"""Estimate archive size: what compressing a raster would give, without writing anything."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import DEVICE_VALUES, GeorsicAlgorithm
from .compress import QUALITY, input_source, quality_parameters, quality_targets


class EstimateSizeAlgorithm(GeorsicAlgorithm):
    INPUT = "INPUT"
    DEVICE = "DEVICE"

    _HELP = (
        "<p>Tells what <i>Compress raster</i> would give for a raster, without writing "
        "anything: the archive size in bytes and bits per pixel, and the PSNR of the decoded "
        "raster. GeoRSIC codes and decodes the raster, or windows spread over a large one, "
        "as it does to meet a target.</p>"
        "<h3>Parameters</h3>"
        "<dl>"
        "<dt><b>Quality</b>, <b>Target PSNR</b>, <b>Target bit rate</b></dt><dd>As for "
        "<i>Compress raster</i>: a quality, or one of the targets that replace it.</dd>"
        "<dt><b>Device</b> (advanced)</dt><dd>Automatic uses a CUDA GPU when one is "
        "available.</dd>"
        "</dl>"
        "<h3>Outputs</h3>"
        "<dl><dt><b>BYTES</b>, <b>BPP</b>, <b>PSNR</b>, <b>QUALITY_USED</b></dt><dd>The "
        "expected archive size, its bits per pixel, the PSNR (dB) and the quality, for models, "
        "batch runs over many rasters, and <code>qgis_process run georsic:estimate -- "
        "INPUT=scene.tif TARGET_PSNR=30</code>.</dd></dl>"
    )

    def name(self) -> str:
        return "estimate"

    def displayName(self) -> str:
        return self.tr("Estimate archive size")

    def tags(self):
        return self.tr("estimate,size,bpp,psnr,quality,compression,grsc").split(",")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")))
        for param in quality_parameters(self.tr):
            self.addParameter(param)
        self.addParameter(self.device_parameter(self.DEVICE))
        for name, label in (("BYTES", "Expected archive size (bytes)"),
                            ("BPP", "Expected bits per pixel"), ("PSNR", "Expected PSNR (dB)"),
                            ("QUALITY_USED", "Quality")):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        source = input_source(self, self.INPUT, parameters, context)
        targets = quality_targets(self, parameters, context)
        quality = None if targets else self.parameterAsDouble(parameters, QUALITY, context)
        device = DEVICE_VALUES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        georsic = self.load_backend()
        guess = self.call_backend(
            georsic,
            lambda *args, progress=None, **kwargs: georsic.estimate(*args, **kwargs),
            feedback,
            source,
            quality=quality,
            device=device,
            **targets,
        )
        feedback.pushInfo(
            self.tr("Quality {:.2f}: about {:,} bytes ({:.4f} bits per pixel), PSNR {:.2f} dB")
            .format(guess.quality, guess.bytes, guess.bpp, guess.psnr)
        )
        return {"BYTES": guess.bytes, "BPP": guess.bpp, "PSNR": guess.psnr,
                "QUALITY_USED": guess.quality}
