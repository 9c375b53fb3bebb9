"""Turning a received job message into a Job, or into the error that
answers it. Everything a client sends is checked here, before anything is
queued: the op, every parameter, every frame's description against its
bytes, and the server's limits."""
from __future__ import annotations

from sharpfu_client import wire
from sharpfu_client.wire import WireError

from . import pixels
from .jobs import Job
from .ops import OPS
from .shm import SegmentMapper


def parse_job(header: dict, payloads: list, client: bytes, settings, mapper: SegmentMapper) -> Job:
    msg_id = header["id"]
    op = header.get("op")
    if not isinstance(op, wire.string_types) or op not in OPS:
        raise WireError("unknown_op", "Unknown operation %r; this server offers %s." % (
            op, ", ".join(sorted(OPS))), msg_id)
    spec = OPS[op]
    params = spec.check_params(header.get("params", {}), msg_id)
    descs = header.get("frames")
    if not isinstance(descs, list):
        raise WireError("bad_frame", "A job needs 'frames': a list of frame descriptors.", msg_id)
    names = [d.get("name") if isinstance(d, dict) else None for d in descs]
    if spec.max_frames:
        if not 1 <= len(names) <= spec.max_frames or any(n != spec.inputs[0] for n in names):
            raise WireError("bad_frame", "%s takes 1 to %d frames, all named %r; got %s." % (
                op, spec.max_frames, spec.inputs[0], names[:8]), msg_id)
    elif names != list(spec.inputs):
        raise WireError("bad_frame", "%s takes the frames %s, in that order; got %s." % (
            op, list(spec.inputs), names), msg_id)
    for desc in descs:
        wire.check_frame(desc, settings.max_pixels, msg_id)
    inline = [d for d in descs if d.get("shm") is None]
    if len(inline) != len(payloads):
        raise WireError("bad_frame", "The header describes %d inline frame(s) but %d came." % (
            len(inline), len(payloads)), msg_id)
    _check_geometry(op, descs, params, settings, msg_id)

    reply_region = reply_ref = None
    if header.get("reply_shm") is not None:
        reply_ref = header["reply_shm"]
        if not isinstance(reply_ref, dict):
            raise WireError("bad_frame", "'reply_shm' must be an object.", msg_id)
        wire.check_shm_ref(reply_ref, msg_id)
        reply_region = mapper.view(reply_ref, msg_id)

    inputs, input_refs, held = {}, {}, 0
    payload_iter = iter(payloads)
    for desc in descs:
        nbytes = wire.frame_nbytes(desc)
        if desc.get("shm") is not None:
            buffer = mapper.view(desc["shm"], msg_id)
            input_refs[desc["name"]] = dict(desc["shm"])
        else:
            part = next(payload_iter)
            buffer = part.buffer if hasattr(part, "buffer") else memoryview(part)
            if buffer.nbytes != nbytes:
                raise WireError("bad_frame", "Frame %r has %d bytes; %dx%dx%d %s needs %d." % (
                    desc["name"], buffer.nbytes, desc["width"], desc["height"], desc["channels"],
                    desc["format"], nbytes), msg_id)
            held += nbytes
        clean = {k: desc[k] for k in ("name", "width", "height", "channels", "format")}
        # Repeated frames (adapt's samples) are told apart by their position.
        key = desc["name"] if not spec.max_frames else "%s%d" % (desc["name"], len(inputs))
        inputs[key] = (clean, pixels.as_array(buffer, clean))
    session = header.get("session")
    return Job(id=msg_id, client=client, op=op, params=params, inputs=inputs, held_bytes=held,
               reply_region=reply_region, reply_ref=reply_ref, input_refs=input_refs,
               session=session if isinstance(session, str) and session else None)


def _check_geometry(op: str, descs: list, params: dict, settings, msg_id: str) -> None:
    spec = OPS[op]
    if spec.runner == "adapt":
        _check_samples(descs, params, msg_id)
        return
    image = descs[0]
    out_pixels = image["width"] * image["height"] * spec.scale(params) ** 2
    if out_pixels > settings.max_pixels:
        raise WireError("too_large", "The result would have %.1f megapixels; this server makes at "
                        "most %.1f. Use a smaller scale or region, or raise max_megapixels." % (
                            out_pixels / 1e6, settings.max_pixels / 1e6), msg_id)
    for mask in (desc for desc in descs if desc["name"] in spec.masks):
        if (mask["width"], mask["height"]) != (image["width"], image["height"]):
            raise WireError("bad_frame", "The %s must have the image's size (%dx%d), not %dx%d."
                            % (mask["name"], image["width"], image["height"], mask["width"],
                               mask["height"]), msg_id)
        if mask["channels"] != 1:
            raise WireError("bad_frame", "The %s must have 1 channel, not %d."
                            % (mask["name"], mask["channels"]), msg_id)


def _check_samples(descs: list, params: dict, msg_id: str) -> None:
    from .adaptation import MAX_SAMPLE_PIXELS, smallest_sample
    side = smallest_sample(params["scale"])
    total = sum(d["width"] * d["height"] for d in descs)
    if total > MAX_SAMPLE_PIXELS:
        raise WireError("too_large", "The samples have %.1f megapixels together; adapt takes at "
                        "most %.1f. Send fewer or smaller samples (tiles of the images do)." % (
                            total / 1e6, MAX_SAMPLE_PIXELS / 1e6), msg_id)
    if all(min(d["width"], d["height"]) < side for d in descs):
        raise WireError("bad_frame", "Adapting %dx needs samples at least %d pixels on their "
                        "shorter side; the largest is %dx%d." % (
                            params["scale"], side, *max(((d["width"], d["height"]) for d in descs),
                                                        key=min)), msg_id)


def parse_cancel(header: dict) -> str:
    job_id = header.get("job")
    if not isinstance(job_id, wire.string_types) or not 0 < len(job_id) <= wire.MAX_ID_LENGTH:
        raise WireError("bad_header", "A cancel request needs 'job': the id of the job to cancel.",
                        header["id"])
    return str(job_id)
