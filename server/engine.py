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
from .adaptation import Adapter
from . import pixels, tiling
from .catalog import Catalog
from .jobs import Job, JobError
from .methods import ImageMethod, MatteMethod, SubjectMethod
from .methods import foreground
from .methods.lanczos import upscale as lanczos_upscale
from .methods.laplacian_matte import _sample, working_size
from .ops import OPS

log = logging.getLogger("sharpfu.engine")

MIN_TILE = 64
CPU_TILE_LIMIT = 1024     # larger CPU tiles gain no speed and coarsen progress
SUBTILE_INTERVAL = 0.5    # seconds between progress reports inside a tile
# select: the largest picture a subject finder is given (the image area-shrunk,
# never enlarged); segmentation networks work at about 1 MP, so nothing is lost
# and the memory it needs is bounded whatever the photo's size.
# Result frames a job asks for, in the words of a refusal that GIMP shows
# and the CLI prints: what the frame is, and how each asked for it.
ON_REQUEST_WORDS = {"kernel": "the estimated blur: it does not estimate one"}
ON_REQUEST_ASKED = {"kernel": "Show estimated blur (on the command line, --save-kernel)"}
SUBJECT_PIXELS = 4_000_000
SUBJECT_REFINER = "laplacian"   # select's refine: the matte op's band solver

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
                "defaults": self.catalog.defaults(),
                "choices": self.catalog.choices()}

    # -- one job --------------------------------------------------------------

    def check(self, job: Job) -> None:
        """Refuse at once, before queueing, a job naming a method that cannot do it."""
        if job.op == "matte":
            self.catalog.pick("matte", job.params["method"])
        elif job.op == "select":
            self.catalog.pick("select", job.params["method"])
        elif job.op == "adapt":
            self.adapter.check(job)
        elif job.op != "echo":
            stages = self._stages(job, choose=False)
            wanted = [name for name in OPS[job.op].on_request if job.params.get(name)]
            missing = [name for name in wanted if name not in stages[0][0].extra_frames]
            if missing:
                able = sorted({m.name for m in self.catalog.methods.values()
                               if job.op in m.ops and set(missing) <= set(getattr(
                                   m, "extra_frames", ()))})
                raise JobError("bad_params", "%s cannot give %s. Turn off %s, or choose a "
                               "method that can: %s." % (
                                   stages[0][0].title,
                                   " or ".join(ON_REQUEST_WORDS.get(n, repr(n)) for n in missing),
                                   " and ".join(ON_REQUEST_ASKED.get(n, repr(n)) for n in missing),
                                   ", ".join(able) or "none is installed"))

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
        if job.op == "select":
            method = self.catalog.pick("select", job.params["method"])
            stages = [(method, 1)]
            if job.params["refine"]:
                stages.append((self.catalog.methods[SUBJECT_REFINER], 1))
            return self._select(job, method, report), _describe(stages)
        if job.op == "adapt":
            job.outcome = {"adaptation": self.adapter.run(job, report)}
            return [], self.catalog.methods[job.outcome["adaptation"]["model"]].info()
        stages = self._stages(job)
        strength = job.params.get("strength", 1.0)
        if strength == 0.0:
            # Nothing of the method's change is kept: the plain result, without
            # running (or loading) the method at all.
            scale = math.prod(s for _, s in stages)
            plain = [(self.catalog.methods["lanczos"], scale)]
            described = (dict(_describe(plain), strength=0.0) if scale > 1 else
                         {"name": "none", "kind": "classical", "strength": 0.0,
                          "title": "Unchanged (strength 0)"})
            return self._image(job, plain, report), described
        described = _describe(stages)
        if strength < 1.0:
            described["strength"] = strength
        return self._image(job, stages, report, strength), described

    def _stages(self, job: Job, choose: bool = True) -> list[tuple[ImageMethod, int]]:
        stages = self.catalog.chain(job.op, job.params.get("scale") or 1, job.params["method"])
        if not choose:
            return stages
        # a method that chooses per image (`auto`) hands over to its choice
        image = job.inputs["image"][1] if "image" in job.inputs else None
        return [(m.choose(image, s) if hasattr(m, "choose") and image is not None else m, s)
                for m, s in stages]

    def _image(self, job: Job, stages, report: Report, strength: float = 1.0):
        """Run the stages tile by tile; with strength under 1, the result is
        mixed with the image plainly resampled (Lanczos-3; unchanged at 1x).
        The first stage first sees the whole frame (ImageMethod.prepare: a
        blur kernel is estimated from all of it) and may add result frames
        the job asked for."""
        desc, image = job.inputs["image"]
        scale = math.prod(s for _, s in stages)
        channels = desc["channels"]
        has_alpha = channels in (2, 4)
        bounded = desc["format"] != "f32"       # float pictures may hold light above 1
        if has_alpha:
            report(0.0, "preparing transparent areas")
            image = pixels.fill_transparent(image, desc["format"])
        for method, _ in stages:
            if not method.loaded:
                report(0.0, "loading %s" % method.title)
            self.catalog.ensure_loaded(method, self.device)
        colour_channels = channels - has_alpha
        rgb_only = any(m.rgb_only for m, _ in stages)
        (first, first_scale), rest = stages[0], stages[1:]
        start = first.prepared_share

        def preparing(fraction: float, stage: str) -> None:
            if job.cancel.is_set():
                raise tiling.Cancelled()
            report(fraction * start, stage)
        prepared = first.prepare(image, desc["format"], colour_channels, first_scale, job.params,
                                 preparing)

        def tile_fn(inputs: list[torch.Tensor], box) -> torch.Tensor:
            x = inputs[0]
            colour, alpha = (x[:, :colour_channels], x[:, colour_channels:]) if has_alpha else (x, None)
            if rgb_only and colour_channels == 1:
                colour = colour.expand(-1, 3, -1, -1)
            original = colour
            colour = prepared.run(colour, box).float()
            for method, stage_scale in rest:
                if bounded:
                    # Between stages, the picture the next network sees is
                    # what the first would have written: it was trained on
                    # 0..1, and overshoots outside it (a classical
                    # deblurrer's halo, clipped highlights) are amplified,
                    # not restored
                    colour = colour.clamp(0.0, 1.0)
                colour = method.forward(colour, stage_scale).float()
            if strength < 1.0:
                plain = lanczos_upscale(original, scale).clamp_(0.0, 1.0)
                colour = (plain + strength * (colour - plain)).clamp_(0.0, 1.0)
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
        margin = prepared.margin + sum(m.margin for m, _ in rest)
        align = math.lcm(*(m.alignment for m, _ in stages))
        bytes_per_pixel = max(m.bytes_per_pixel for m, _ in stages) * scale * scale
        title = " + ".join(m.title for m, _ in stages)
        largest = min((m.largest_tile for m, _ in stages if m.largest_tile), default=None)
        self._tiled(job, [image], [desc["format"]], out, desc["format"], tile_fn, scale, margin,
                    bytes_per_pixel, title, report, align, largest, start=start,
                    networks=[n for m, s in stages for n in m.networks(s)])
        job.outcome.update(prepared.outcome)
        results = [(out_desc, out, ref)]
        for name in OPS[job.op].on_request:
            if job.params.get(name) and name in prepared.frames:
                values = np.ascontiguousarray(prepared.frames[name], np.float32)
                frame_desc = {"name": name, "width": values.shape[1], "height": values.shape[0],
                              "channels": values.shape[2], "format": "f32"}
                frame, frame_ref = job.allocate(frame_desc)
                frame[...] = values
                results.append((frame_desc, frame, frame_ref))
        return results

    def _matte(self, job: Job, method: MatteMethod, report: Report):
        desc, image = job.inputs["image"]
        mask_desc, mask = job.inputs["mask"]
        channels = desc["channels"]
        has_alpha = channels in (2, 4)
        if has_alpha:
            image = pixels.fill_transparent(image, desc["format"])
        self.catalog.ensure_loaded(method, self.device)
        return self._refined(job, method, desc, image, mask, mask_desc["format"], "alpha",
                             report)

    def _refined(self, job: Job, method: MatteMethod, desc: dict, image: np.ndarray,
                 mask: np.ndarray, mask_format: str, name: str, report: Report,
                 covered: bool = False):
        """`method`'s matte of the coarse `mask` over `image` (its
        transparent pixels filled) as result frame `name`, with the
        foreground frame when the job asks. covered: the matte is multiplied
        by the image's alpha (select: transparent pixels are background)."""
        channels = desc["channels"]
        colour_channels = channels - (channels in (2, 4))
        if job.params["foreground"]:
            # the last fifth of the progress: the foreground colours
            matte_report = lambda fraction, stage: report(0.8 * fraction, stage)  # noqa: E731
        else:
            matte_report = report

        def preparing(fraction: float, stage: str) -> None:
            if job.cancel.is_set():
                raise tiling.Cancelled()
            matte_report(fraction * method.prepared_share, stage)
        matte = method.prepare(image, desc["format"], colour_channels, mask, mask_format,
                               job.params.get("iterations") or None, preparing)

        def tile_fn(inputs: list[torch.Tensor], box) -> torch.Tensor:
            colour, coarse = inputs[0][:, :colour_channels], inputs[1]
            if colour_channels == 1:
                colour = colour.expand(-1, 3, -1, -1)
            alpha = matte(colour, coarse.clamp(0.0, 1.0), box).float()
            if covered and channels != colour_channels:
                alpha = alpha * inputs[0][:, colour_channels:]
            return alpha

        out_desc = dict(desc, name=name, channels=1)
        out, ref = job.allocate(out_desc)
        self._tiled(job, [image, mask], [desc["format"], mask_format], out,
                    desc["format"], tile_fn, 1, method.margin, method.bytes_per_pixel,
                    method.title, matte_report, method.alignment, method.largest_tile,
                    start=method.prepared_share, networks=method.networks(1))
        return [(out_desc, out, ref)] + self._foreground(job, desc, image, out, report)

    def _foreground(self, job: Job, desc: dict, image: np.ndarray, alpha: np.ndarray,
                    report: Report) -> list:
        """The foreground frame (matte and select, on request): the image's
        colours free of the old background, given the alpha frame."""
        if not job.params["foreground"]:
            return []
        if job.cancel.is_set():
            raise tiling.Cancelled()
        report(0.8, "foreground colours")
        colour_channels = desc["channels"] - (desc["channels"] in (2, 4))
        fg_desc = dict(desc, name="foreground", channels=colour_channels)
        fg, fg_ref = job.allocate(fg_desc)
        foreground.into_frame(image, desc["format"], colour_channels, alpha, fg, self.device)
        return [(fg_desc, fg, fg_ref)]

    def _select(self, job: Job, method: SubjectMethod, report: Report):
        """The subject's soft mask: the method sees the whole image once, at
        most SUBJECT_PIXELS (no tiles: it judges the picture as a whole);
        its mask, enlarged to the image's size, is refined by the matte's
        band solver (refine) or written as it is. Transparent pixels are
        background: the mask is multiplied by the image's alpha."""
        desc, image = job.inputs["image"]
        fmt, channels = desc["format"], desc["channels"]
        colour_channels = channels - (channels in (2, 4))
        refine = job.params["refine"]
        refiner = self.catalog.methods[SUBJECT_REFINER] if refine else None
        # the subject finder's share of the progress; the rest is the refine's,
        # or writing the enlarged mask
        share = 0.3 if refine else 0.8
        if colour_channels != channels:
            report(0.0, "preparing transparent areas")
            image = pixels.fill_transparent(image, fmt)
        if not method.loaded:
            report(0.0, "loading %s" % method.title)
        self.catalog.ensure_loaded(method, self.device)
        if refiner is not None:
            self.catalog.ensure_loaded(refiner, self.device)
        height, width = image.shape[:2]
        small = working_size(height, width, SUBJECT_PIXELS)
        if job.cancel.is_set():
            raise tiling.Cancelled()
        finding = "%s: finding the subject" % method.title
        report(0.0, finding)
        colour = pixels.shrunk(image, fmt, colour_channels, small, self.device)
        if colour_channels == 1:
            colour = colour.expand(-1, 3, -1, -1)

        def inside(fraction: float, done: int, total: int) -> None:
            # as the network's layers finish: progress, and a cancel is
            # honoured within the one long call
            if job.cancel.is_set():
                raise tiling.Cancelled()
            report(share * fraction, finding)
        within = TileProgress(method.networks(1))
        within.report = inside
        try:
            with torch.inference_mode():
                found = method.subject(colour.contiguous())
        finally:
            within.close()
        if not isinstance(found, torch.Tensor) or tuple(found.shape) != (1, 1) + small:
            raise JobError("model_failed", "%s answered with a mask of shape %s for a %dx%d "
                           "picture; nothing was returned." % (
                               method.title, tuple(getattr(found, "shape", ())), small[1],
                               small[0]))
        found = found.detach().float().clamp(0.0, 1.0)
        if not bool(torch.isfinite(found).all()):
            raise JobError("model_failed", "%s produced invalid values (NaN) in its mask; "
                           "nothing was returned." % method.title)
        del colour
        if job.cancel.is_set():
            raise tiling.Cancelled()
        report(share, "%s: subject found" % method.title)

        def after(fraction: float, stage: str) -> None:
            report(share + (1.0 - share) * fraction, stage)

        def enlarged(box) -> torch.Tensor:
            top, left, rows, cols = box
            return _sample(_sample(found, top, top + rows, height, 2), left, left + cols,
                           width, 3)

        if refiner is not None:
            coarse = np.empty((height, width, 1), np.float32)
            step = max(1, 4_000_000 // width)
            for top in range(0, height, step):
                rows = min(step, height - top)
                coarse[top:top + rows] = enlarged((top, 0, rows, width))[0].permute(
                    1, 2, 0).cpu().numpy()
            return self._refined(job, refiner, desc, image, coarse, "f32", "mask", after,
                                 covered=True)

        def tile_fn(inputs: list[torch.Tensor], box) -> torch.Tensor:
            mask = enlarged(box).to(inputs[0].device)
            if colour_channels != channels:
                mask = mask * inputs[0][:, colour_channels:]
            return mask

        out_desc = dict(desc, name="mask", channels=1)
        out, ref = job.allocate(out_desc)
        self._tiled(job, [image], [fmt], out, fmt, tile_fn, 1, 0, 16.0, method.title,
                    (lambda f, s: after(0.8 * f, s)) if job.params["foreground"] else after)
        return [(out_desc, out, ref)] + self._foreground(job, desc, image, out, after)

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

    def _tile_size(self, job: Job, bytes_per_pixel: float, largest: int | None = None) -> int:
        requested = job.params.get("tile") or self.settings.tile
        free, _ = devices.memory(self.device)
        budget = free * (0.6 if self.device.type == "cuda" else 0.25)
        side = int(math.sqrt(budget / bytes_per_pixel)) // 64 * 64 if bytes_per_pixel else 4096
        if self.device.type != "cuda":
            side = min(side, CPU_TILE_LIMIT)
        if requested:   # smaller tiles on request; larger ones never past the cap
            return max(MIN_TILE, min(requested, side))
        return min(max(256, min(side, 4096)), largest or 4096)

    def _tiled(self, job: Job, sources, formats, out, out_format, tile_fn, scale, margin,
               bytes_per_pixel, title, report: Report, align: int = 1,
               largest: int | None = None, start: float = 0.0,
               networks: list[torch.nn.Module] = ()) -> None:
        """Run tile_fn over the sources into `out`, retrying with smaller
        tiles when the device runs out of memory; progress goes from
        `start` to 1, moving within a tile too as its `networks` work."""
        tile = self._tile_size(job, bytes_per_pixel, largest)
        # After a retry, progress goes on from where it was: clients count on
        # it never going backwards.
        floor = [start, start]  # fraction at the last retry, last fraction reported
        within = TileProgress(networks)

        def text(done: int, total: int) -> str:
            return "%s: tile %d of %d" % (title, done, total) if total > 1 else title

        def progress(done: int, total: int) -> None:
            within.tile_done(done, total)
            if done:
                floor[1] = floor[0] + (1.0 - floor[0]) * done / total
                report(floor[1], text(done, total))

        def inside_tile(share: float, done: int, total: int) -> None:
            floor[1] = floor[0] + (1.0 - floor[0]) * (done + share) / total
            report(floor[1], text(done + 1, total))

        within.report = inside_tile
        try:
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
                    within.restart()
                    report(floor[0], "out of memory; retrying with smaller tiles (%d px)"
                           % smaller)
                    tile = smaller
        finally:
            within.close()


class TileProgress:
    """Progress inside a tile, for the CPU, where one tile can take many
    seconds: every layer of the networks that finishes counts (forward hooks
    on their leaf modules), against the count the first tile needed (before
    that, the number of layers), reported at most every SUBTILE_INTERVAL s.
    It only ever reports work done, and never past the tile's end."""

    def __init__(self, networks):
        leaves = [m for net in networks for m in net.modules() if next(m.children(), None) is None]
        self.expected = max(1, len(leaves))
        self.calls, self.done, self.total = 0, 0, 1
        self.last = time.monotonic()
        self.report = None
        self.handles = [m.register_forward_hook(self._layer_done) for m in leaves]

    def _layer_done(self, *_):
        self.calls += 1
        now = time.monotonic()
        if self.report is not None and now - self.last >= SUBTILE_INTERVAL:
            self.last = now
            self.report(min(self.calls / self.expected, 0.99), self.done, self.total)

    def tile_done(self, done: int, total: int) -> None:
        if done == 1 and self.calls:
            self.expected = self.calls      # what a whole tile takes
        self.calls, self.done, self.total = 0, done, total
        self.last = time.monotonic()

    def restart(self) -> None:
        self.calls = self.done = 0

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _describe(stages) -> dict:
    infos = [m.info() for m, _ in stages]
    if len(infos) == 1:
        return infos[0]
    kinds = {i["kind"] for i in infos}
    return {"name": "+".join(i["name"] for i in infos),
            "kind": kinds.pop() if len(kinds) == 1 else "mixed",
            "title": " then ".join(i["title"] for i in infos), "stages": infos}
