"""AI Batch for GIMP 2.10: one SharpFu operation on every layer of an image,
on every open image, or on every file in a folder.

The layers go to the server one after another over one connection. An image
changes only once all of its layers' answers are in, in one undo step, so
when the user cancels (GIMP 2.10 then kills the plug-in) every image is
either done or untouched. A file from a folder is then saved into the output
folder under its own name, which keeps its format, and closed.

Left alone on purpose: text layers (pixels written into one would turn it
into a plain layer; above 1x GIMP scales them, as Image > Scale Image does),
layers whose pixels are locked, and at 1x the layers the selection does not
touch. Layer groups are not processed themselves; the layers inside them are.
A layer or file that fails is noted and the batch goes on; an error that
every other item would meet too (no server, an unknown method) stops it.
"""
import os

from gimpfu import gimp, pdb

import gimp2_job
import gimp2_layers
from gimp2_layers import native
from sharpfu_client import SharpFuError, layers
from sharpfu_client.layers import OutsideSelection, Refusal
from sharpfu_client.operations import BATCH
from sharpfu_client.plugin_jobs import (FATAL, BatchFailed as Failed,  # noqa: F401
                                        BatchReport, BatchStopped as Stopped, listing)

TITLE = BATCH.title
CLIP_TO_IMAGE = 1


class Batch(BatchReport):
    """`done`, `failures` and `notes` say how it went."""

    def __init__(self, op, scale, params, target, accept_8_bit):
        BatchReport.__init__(self, target)
        self.op, self.scale, self.params, self.target = op, scale, params, target
        self.accept_8_bit = accept_8_bit
        self.total = 1
        self.words = None     # JobWords, once connected
        self.finished = 0.0

    def plan(self, name, image):
        """The LayerChanges for image's layers, with a note for each other one."""
        changes = []
        try:
            gimp2_layers.check_precision(image, self.accept_8_bit)
            if self.scale > 1:
                gimp2_layers.check_size(image, self.scale)
            for layer, locked in walk(image.layers):
                label = "%s, layer '%s'" % (name, native(layer.name))
                if pdb.gimp_item_is_text_layer(layer):
                    self.note(label, "so that it stays a text layer")
                elif locked:
                    self.note(label, "its pixels are locked")
                else:
                    gimp2_layers.check_layer(image, layer)
                    try:
                        changes.append(gimp2_layers.LayerChange(image, layer, self.scale))
                    except OutsideSelection:
                        self.note(label, "outside the selection")
        except Refusal as refusal:
            self.failures.append("%s: %s" % (name, refusal.message))
            return []
        return changes

    def process(self, client, name, image, changes, share):
        """Every change of one image through the server; the image changes
        once all the answers are in."""
        ready = []
        for change in changes:
            label = "%s, layer '%s'" % (name, native(change.layer.name))
            gimp2_job.say("%s: %s" % (TITLE, label))
            try:
                job = client.submit(self.op, [change.read()], self.params)
                change.take(gimp2_job.wait(client, job, "%s: %s" % (TITLE, label), self.words,
                                           self.finished / self.total,
                                           share / self.total).frame("image"))
            except SharpFuError as error:
                if error.code in FATAL:
                    raise Stopped(native(error.message))
                self.layer_failed(label, native(error.message))
            except Refusal as refusal:
                self.layer_failed(label, refusal.message)
            else:
                ready.append(change)
            self.finished += share
        if ready:
            gimp2_layers.apply(image, ready, self.scale)
        return len(ready)

    def layer_failed(self, label, message):
        if self.scale > 1 and self.target != "folder":
            message = "%s (GIMP scaled it instead)" % message.rstrip(".")
        self.failures.append("%s: %s" % (label, message))


def walk(layers_of_image):
    """Every layer holding pixels of its own, also inside groups, top to
    bottom, and whether its pixels are locked (by itself or by a group)."""
    return layers.walk(layers_of_image, pdb.gimp_item_is_group, lambda layer: layer.layers,
                       pdb.gimp_item_get_lock_content)


def run(op, scale, params, target, image, source, destination, accept_8_bit):
    """Run the batch; returns the Batch. Raises Refusal when it cannot start,
    and Failed, with the summary, when anything failed."""
    batch = Batch(op, scale, params, target, accept_8_bit)
    if target == "folder":
        names = folder_files(source, destination)
        batch.total = len(names)
        work = lambda client: run_folder(batch, client, source, destination, names)  # noqa: E731
    elif target in ("layers", "images"):
        images = [image] if target == "layers" else sorted(
            [found for found in gimp.image_list() if pdb.gimp_image_is_valid(found)],
            key=lambda found: found.ID)
        tasks = [("%s-%d" % (native(found.name), found.ID), found) for found in images]
        plans = [(name, found, batch.plan(name, found)) for name, found in tasks]
        batch.total = sum(len(changes) for _, _, changes in plans)
        if not batch.total:
            raise Refusal("There is no layer SharpFu can work on: %s." % listing(
                batch.failures + batch.notes))
        work = lambda client: run_images(batch, client, plans)  # noqa: E731
    else:
        raise Refusal("AI Batch works on 'layers', 'images' or 'folder', not %r." % native(target))
    client = gimp2_job.connect(TITLE)
    batch.words = gimp2_job.JobWords(op, client.server_status, params)
    try:
        work(client)
    except Stopped as stopped:
        raise batch.stopped(stopped.message)
    finally:
        client.close()
    gimp2_job.say("%s: %s" % (TITLE, batch.summary()))
    if batch.failures:
        raise Failed(batch.summary())
    return batch


def run_images(batch, client, plans):
    for name, image, changes in plans:
        batch.done += batch.process(client, name, image, changes, 1.0)


def run_folder(batch, client, source, destination, names):
    for name in names:
        path = os.path.join(source, name)
        try:
            image = pdb.gimp_file_load(path, path)
        except RuntimeError as error:
            batch.failures.append("%s: GIMP cannot open it (%s)" % (name, native(str(error))))
            batch.finished += 1
            continue
        try:
            pdb.gimp_image_undo_disable(image)       # it is closed right after saving
            changes = batch.plan(name, image)
            if not changes:
                if not any(failure.startswith(name + ":") for failure in batch.failures):
                    batch.failures.append("%s: it has no layer SharpFu can work on" % name)
                batch.finished += 1
                continue
            failed = len(batch.failures)
            batch.process(client, name, image, changes, 1.0 / len(changes))
            if len(batch.failures) == failed and save(image, os.path.join(destination, name),
                                                      name, batch.failures):
                batch.done += 1
        finally:
            pdb.gimp_image_delete(image)


def save(image, path, name, failures):
    """Save under the format the name says; False (and a failure noted) when
    GIMP cannot. Formats other than XCF hold one layer: the visible ones are
    merged first (the image is closed right after)."""
    try:
        if path.lower().endswith(".xcf") or len(image.layers) == 1:
            drawable = image.layers[0]
        else:
            drawable = pdb.gimp_image_merge_visible_layers(image, CLIP_TO_IMAGE)
        pdb.gimp_file_save(image, drawable, path, path)
    except RuntimeError as error:
        failures.append("%s: GIMP could not save it (%s)" % (name, native(str(error))))
        return False
    return True


def folder_files(source, destination):
    """The names of the files to process, once the folders are found fit."""
    if not source or not destination:
        raise Refusal("Choose an input folder and an output folder for AI Batch on a folder.")
    if not os.path.isdir(source):
        raise Refusal("The input folder %s does not exist." % native(source))
    if os.path.realpath(source) == os.path.realpath(destination):
        raise Refusal("The output folder is the input folder, so the results would replace the "
                      "originals. Choose another output folder.")
    if not os.path.isdir(destination):
        try:
            os.makedirs(destination)
        except OSError as error:
            raise Refusal("The output folder %s cannot be made: %s" % (
                native(destination), native(error.strerror or str(error))))
    names = sorted(name for name in os.listdir(source)
                   if not name.startswith(".") and os.path.isfile(os.path.join(source, name)))
    if not names:
        raise Refusal("The input folder %s holds no files." % native(source))
    return names
