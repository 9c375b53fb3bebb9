"""Running a job on the device: pick the method, prepare the pixels, tile,
recover from running out of memory, and write the result frames."""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numpy as np
import torch

from . import device as devices
from .adapted import Adapter
from . import ops, pixels, tiling
from .catalog import Catalog
from .jobs import Job, JobError
from .methods import ImageMethod, MatteMethod
from .methods import foreground
from .methods.lanczos import upscale as lanczos_upscale
from .deblurring import blind

log = logging.getLogger("sharpfu.engine")

MIN_TILE = 64
CPU_TILE_LIMIT = 1024     # larger CPU tiles gain no speed and coarsen progress

Report = Callable[[float, str], None]


class Engine:
    def __init__(self, settings):
        self.settings = settings
        self.device = devices.select(settings.device)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.catalog = Catalog(settings)
        self.adapter = Adapter(self.catalog, self.device, settings.models_dir)

    def status(self) -> dict:
        return {"device": devices.describe(self.device, self.settings.precision),
                "methods": self.catalog.info(),
                "defaults": self.catalog.defaults()}

    # -- one job --------------------------------------------------------------

    def check(self, job: Job) -> None:
        """Refuse at once, before queueing, a job naming a method that cannot do it."""
        if job.op == "matte":
            self.catalog.pick("matte", job.params["method"])
        elif job.op == "adapt":
            self.adapter.check(job)
        elif job.op != "echo":
            stages = self._stages(job)
            if job.op in ("deblur", "sharpen"):
                self._check_deblur(job, stages)

    def run(self, job: Job, report: Report) -> tuple[list[tuple[dict, np.ndarray, dict | None]], dict]:
        """Returns the result frames (descriptor, array, shared-memory ref or
        None) and the description of the method that made them."""
        for desc, array in job.inputs.values():
            if not pixels.is_finite(array):
                raise JobError("bad_pixels", "Frame %r contains NaN or infinite values. Replace "
                               "them (e.g. flatten or clamp the layer) and try again." % desc["name"])
        if job.op == "echo":
            return self._echo(job, report), {"name": "echo", "kind": "diagnostic",
                                              "title": "Pass-through"}
        if job.op == "matte":
            method = self.catalog.pick("matte", job.params["method"])
            return self._matte(job, method, report), method.info()
        if job.op == "adapt":
            job.outcome = {"adaptation": self.adapter.run(job, report)}
            return [], self.catalog.methods[job.outcome["adaptation"]["model"]].info()
        stages = self._stages(job)
        return self._image(job, stages, report), _describe(stages)

    def _stages(self, job: Job) -> list[tuple[ImageMethod, int]]:
        stages = self.catalog.chain(job.op, job.params.get("scale") or 1, job.params["method"])
        if job.op == "sharpen" and job.params["strength"] == 0.0 and len(stages) > 1:
            # nothing of the deblurring is wanted: only the upscaler runs
            stages = stages[1:]
        return stages

    def _check_deblur(self, job: Job, stages) -> None:
        size = job.params["kernel_size"]
        if size and (size < 3 or size % 2 == 0):
            raise JobError("bad_params", "Option 'kernel_size' must be 0 (automatic) or an odd "
                                         "number of pixels from 3 to %d, not %d." % (
                                             ops.MAX_KERNEL, size))
        deblurrer = stages[0][0]
        if job.params["kernel"] and not getattr(deblurrer, "estimates_kernel", False):
            raise JobError("bad_params", "%s estimates no blur kernel, so it cannot return one; "
                                         "use a method that does (see status) or leave out "
                                         "'kernel'." % deblurrer.title)

    def _image(self, job: Job, stages, report: Report):
        desc, image = job.inputs["image"]
        if job.op in ("deblur", "sharpen") and job.params["strength"] == 0.0 and \
                (job.params.get("scale") or 1) == 1:
            # strength 0 is the input, exactly: nothing runs
            out, ref = job.allocate(dict(desc))
            out[...] = image
            report(1.0, "strength 0: unchanged")
            return [(dict(desc), out, ref)]
        if getattr(stages[0][0], "whole_image", False):
            return self._whole_image(job, stages, report)
        return self._tiled_stages(job, image, desc["format"], desc, stages, report)

    def _whole_image(self, job: Job, stages, report: Report):
        """A first stage that needs the whole picture (blind deconvolution),
        then the rest of the chain in tiles over its result."""
        desc, image = job.inputs["image"]
        fmt, channels = desc["format"], desc["channels"]
        has_alpha = channels in (2, 4)
        if has_alpha:
            report(0.0, "preparing transparent areas")
            image = pixels.fill_transparent(image, fmt)
        for method, _ in stages:
            self.catalog.ensure_loaded(method, self.device)
        method, rest = stages[0][0], stages[1:]
        share = 0.7 if rest else 1.0

        def progress(fraction: float, stage: str) -> None:
            if job.cancel.is_set():
                raise tiling.Cancelled()
            report(share * fraction, "%s: %s" % (method.title, stage))

        x = pixels.to_tensor(image, fmt, self.device)[0]
        colour = x[:channels - has_alpha]
        request = blind.Request(strength=job.params["strength"],
                                kernel_size=job.params["kernel_size"],
                                tile=job.params.get("tile") or 0)
        try:
            outcome = method.run_whole(colour, request, progress)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is translated
            if not devices.is_out_of_memory(error):
                raise
            devices.release_cached(self.device)
            raise JobError("out_of_memory")
        # deconvolution overshoots a little at edges; keep the input's range
        low, high = min(0.0, float(colour.min())), max(1.0, float(colour.max()))
        result = outcome.image.clamp(low, high)
        if has_alpha:
            result = torch.cat([result, x[channels - 1:]], 0)
        job.outcome = {"deblur": outcome.describe()}
        frames = []
        if not rest:
            out, ref = job.allocate(dict(desc))
            pixels.store(result.permute(1, 2, 0).cpu().numpy(), out, fmt)
            frames.append((dict(desc), out, ref))
        else:
            intermediate = result.permute(1, 2, 0).contiguous().cpu().numpy()
            del x, colour, result
            frames += self._tiled_stages(
                job, intermediate, "f32", desc, rest,
                lambda fraction, stage: report(share + (1 - share) * fraction, stage),
                alpha_ready=True)
        if job.params["kernel"]:
            kernel = outcome.kernel.float()
            kernel = (kernel / kernel.max()).cpu().numpy()[:, :, None]
            kernel_desc = {"name": "kernel", "width": kernel.shape[1], "height": kernel.shape[0],
                           "channels": 1, "format": "f32"}
            out, ref = job.allocate(kernel_desc)
            out[...] = kernel
            frames.append((kernel_desc, out, ref))
        return frames

    def _tiled_stages(self, job: Job, image: np.ndarray, fmt: str, desc: dict, stages,
                      report: Report, alpha_ready: bool = False):
        """The chain in tiles over `image` (in `fmt`), the result in the
        input frame's format `desc`."""
        scale = math.prod(s for _, s in stages)
        channels = desc["channels"]
        has_alpha = channels in (2, 4)
        if has_alpha and not alpha_ready:
            report(0.0, "preparing transparent areas")
            image = pixels.fill_transparent(image, fmt)
        for method, _ in stages:
            self.catalog.ensure_loaded(method, self.device)
        colour_channels = channels - has_alpha
        rgb_only = any(m.rgb_only for m, _ in stages)
        # a deblurring stage's strength mixes its result with its input
        strength = job.params.get("strength", 1.0) if job.op in ("deblur", "sharpen") else 1.0

        def tile_fn(inputs: list[torch.Tensor]) -> torch.Tensor:
            x = inputs[0]
            colour, alpha = (x[:, :colour_channels], x[:, colour_channels:]) if has_alpha else (x, None)
            if rgb_only and colour_channels == 1:
                colour = colour.expand(-1, 3, -1, -1)
            for method, stage_scale in stages:
                before = colour
                colour = method.forward(colour, stage_scale).float()
                if strength < 1.0 and "deblur" in method.ops and stage_scale == 1:
                    colour = before + strength * (colour - before)
            if rgb_only and colour_channels == 1:
                colour = colour.mean(1, keepdim=True)
            if alpha is not None:
                # Alpha is resampled classically: a model trained on photos
                # has no business inventing transparency.
                alpha = lanczos_upscale(alpha, scale).clamp_(0.0, 1.0)
                colour = torch.cat([colour, alpha], 1)
            return colour

        out_desc = dict(desc, width=desc["width"] * scale, height=desc["height"] * scale)
        out, ref = job.allocate(out_desc)
        margin = sum(m.margin for m, _ in stages)
        align = math.lcm(*(m.alignment for m, _ in stages))
        bytes_per_pixel = max(m.bytes_per_pixel for m, _ in stages) * scale * scale
        title = " + ".join(m.title for m, _ in stages)
        self._tiled(job, [image], [fmt], out, desc["format"], tile_fn, scale, margin,
                    bytes_per_pixel, title, report, align)
        return [(out_desc, out, ref)]

    def _matte(self, job: Job, method: MatteMethod, report: Report):
        desc, image = job.inputs["image"]
        mask_desc, mask = job.inputs["mask"]
        channels = desc["channels"]
        has_alpha = channels in (2, 4)
        if has_alpha:
            image = pixels.fill_transparent(image, desc["format"])
        colour_channels = channels - has_alpha
        self.catalog.ensure_loaded(method, self.device)

        def tile_fn(inputs: list[torch.Tensor]) -> torch.Tensor:
            colour, coarse = inputs[0][:, :colour_channels], inputs[1]
            if colour_channels == 1:
                colour = colour.expand(-1, 3, -1, -1)
            return method.forward(colour, coarse.clamp(0.0, 1.0)).float()

        out_desc = dict(desc, name="alpha", channels=1)
        out, ref = job.allocate(out_desc)
        if getattr(method, "whole_image", False):
            # A network that needs the whole picture reads the frames itself.
            def progress(fraction: float, stage: str) -> None:
                if job.cancel.is_set():
                    raise tiling.Cancelled()
                report(fraction * (0.8 if job.params["foreground"] else 1.0), stage)
            method.run(image, desc["format"], colour_channels, mask, mask_desc["format"], out,
                       desc["format"], job.params.get("tile") or 0,
                       job.params["iterations"] or None, progress)
        else:
            self._tiled(job, [image, mask], [desc["format"], mask_desc["format"]], out,
                        desc["format"], tile_fn, 1, method.margin, method.bytes_per_pixel,
                        method.title, report, method.alignment)
        results = [(out_desc, out, ref)]
        if job.params["foreground"]:
            if job.cancel.is_set():
                raise tiling.Cancelled()
            report(0.8, "foreground colours")
            fg_desc = dict(desc, name="foreground", channels=colour_channels)
            fg, fg_ref = job.allocate(fg_desc)
            foreground.into_frame(image, desc["format"], colour_channels, out, fg, self.device)
            results.append((fg_desc, fg, fg_ref))
        return results

    def _echo(self, job: Job, report: Report):
        delay = job.params["delay"]
        steps = job.params["steps"] if delay else 0   # no time to spend, nothing to report
        for step in range(steps):
            if job.cancel.is_set():
                raise tiling.Cancelled()
            if delay:
                time.sleep(delay / steps)
            report((step + 1) / steps, "echo %d/%d" % (step + 1, steps))
        # A true pass-through: the very bytes that came in go back, from the
        # client's own shared memory or as the received message frame, so
        # the transport benchmark measures moving pixels and nothing else.
        return [(desc, array, job.input_refs.get(name))
                for name, (desc, array) in job.inputs.items()]

    # -- tiling and memory ----------------------------------------------------

    def _tile_size(self, job: Job, bytes_per_pixel: float) -> int:
        requested = job.params.get("tile") or self.settings.tile
        if requested:
            return max(MIN_TILE, requested)
        free, _ = devices.memory(self.device)
        budget = free * (0.6 if self.device.type == "cuda" else 0.25)
        side = int(math.sqrt(budget / bytes_per_pixel)) // 64 * 64
        if self.device.type != "cuda":
            side = min(side, CPU_TILE_LIMIT)
        return max(256, min(side, 4096))

    def _tiled(self, job: Job, sources, formats, out, out_format, tile_fn, scale, margin,
               bytes_per_pixel, title, report: Report, align: int = 1) -> None:
        tile = self._tile_size(job, bytes_per_pixel)
        # After a retry, progress goes on from where it was: clients count on
        # it never going backwards.
        floor = [0.0, 0.0]  # fraction at the last retry, last fraction reported

        def progress(done: int, total: int) -> None:
            floor[1] = floor[0] + (1.0 - floor[0]) * done / total
            report(floor[1], "%s: tile %d of %d" % (title, done, total) if total > 1 else title)

        while True:
            try:
                tiling.run_tiled(sources, formats, out, out_format, tile_fn, scale=scale,
                                 tile=tile, margin=margin, device=self.device, align=align,
                                 progress=progress, cancelled=job.cancel.is_set)
                return
            except Exception as error:  # noqa: BLE001 - only out-of-memory is retried
                if not devices.is_out_of_memory(error):
                    raise
                devices.release_cached(self.device)
                smaller = tile // 2
                if smaller < max(MIN_TILE, tiling.min_tile(margin, align)):
                    raise JobError("out_of_memory")
                log.warning("job %s: out of memory with %d px tiles; retrying with %d px",
                            job.id, tile, smaller)
                floor[0] = floor[1]
                report(floor[0], "out of memory; retrying with smaller tiles (%d px)" % smaller)
                tile = smaller


def _describe(stages) -> dict:
    infos = [m.info() for m, _ in stages]
    if len(infos) == 1:
        return infos[0]
    kinds = {i["kind"] for i in infos}
    return {"name": "+".join(i["name"] for i in infos),
            "kind": kinds.pop() if len(kinds) == 1 else "mixed",
            "title": " then ".join(i["title"] for i in infos), "stages": infos}
