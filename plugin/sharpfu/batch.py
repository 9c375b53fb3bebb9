"""AI Batch: one SharpFu operation on every layer of an image, on every open
image, or on every file in a folder.

The layers go to the server one job each, and the next job is sent while the
current one runs (IN_FLIGHT at most), so the server never waits for GIMP.
An image changes only once all of its layers' answers are in, in one undo
step. So when GIMP kills the plug-in (Cancel), every image is either done or
untouched. A file from a folder is then exported into the output folder
under its own name, which keeps its format, and closed.

What is left alone on purpose:
  * text layers, and 3.2's vector and link layers: pixels written into one
    would turn it into a plain layer. Above 1x GIMP scales them, as Image >
    Scale Image does;
  * layers whose pixels are locked (or that are in a locked group);
  * at 1x, layers the selection does not touch.
Layer groups are not processed themselves; the layers inside them are.

A layer that fails leaves its whole image as it was (and its file unwritten):
an image is never left half-changed. The failure is noted and the batch goes
on with the next image or file. Notes and failures are reported once, at the
end. An error that every other item would meet too (no server, an unknown
method) stops the batch at once.
"""
import os
from collections import deque

import gi
gi.require_version("Gimp", "3.0")
from gi.repository import GLib, Gimp, Gio  # noqa: E402

import gimp_pixels  # noqa: E402
import in_place  # noqa: E402
import server_job  # noqa: E402
from sharpfu_client import SharpFuError, layers  # noqa: E402
from sharpfu_client.adapt import task_for  # noqa: E402
from sharpfu_client.layers import Declined, OutsideSelection, Refusal  # noqa: E402
from sharpfu_client.operations import BATCH  # noqa: E402
from sharpfu_client.plugin_jobs import (FATAL, BatchFailed as Failed,  # noqa: E402,F401
                                        BatchReport, BatchStopped as Stopped, listing)

TITLE = BATCH.title
IN_FLIGHT = 2     # jobs at the server: the one it works on and the next
# Layers whose pixels GIMP makes from something else (3.2 has the last two).
GENERATED = (("is_text_layer", "text"), ("is_vector_layer", "vector"), ("is_link_layer", "link"))


class Task(object):
    """One image of the batch, and what it is to become. `output` is where
    a file from a folder goes; None for an open image, which changes in place."""

    def __init__(self, name, image, number, output=None):
        self.name, self.image, self.number, self.output = name, image, number, output
        self.changes = []     # in_place.LayerChange, one per layer to process
        self.failures = []
        self.failed = []      # the changes that failed
        self.layers = 0       # all its layers, processed or not
        self.left = 0         # changes still without an answer


class Batch(BatchReport):
    """Runs `op` over tasks for a target ("layers", "images" or "folder").
    `done`, `failures` and `notes` say how it went."""

    def __init__(self, op, scale, params, target):
        BatchReport.__init__(self, target)
        self.op, self.scale, self.params, self.target = op, scale, params, target
        self.guard = None         # guard(size, name), see run()
        self.total = 0            # files, or layers of open images
        self.finished = 0.0       # of them done, for the progress bar
        self.open_files = []      # images loaded from files and not closed yet
        self.running = []         # (task, change, number, job), oldest first
        self.refused = deque()    # (task, change, number) the server was too busy for
        self.shown = None
        self.words = None         # JobWords, once connected

    # -- what to do ---------------------------------------------------------

    def plan(self, task):
        """Find the layers of task's image to process, with a note for each other one."""
        try:
            if self.scale > 1:
                in_place.check_size(task.image, self.scale)
                if self.guard is not None:
                    self.guard(in_place.result_size(task.image, None, self.scale), task.name)
            found = list(walk(task.image.get_layers()))
            task.layers = len(found)
            for layer, locked in found:
                kind = next((kind for method, kind in GENERATED
                             if getattr(layer, method, None) and getattr(layer, method)()), None)
                if kind:
                    self.leave(task, layer, "so that it stays a %s layer" % kind)
                elif locked:
                    self.leave(task, layer, "its pixels are locked")
                else:
                    gimp_pixels.check_layer(task.image, layer, changes_layer=True)
                    try:
                        task.changes.append(in_place.LayerChange(task.image, layer, self.scale))
                    except OutsideSelection:
                        self.leave(task, layer, "outside the selection")
        except Declined:
            raise
        except Refusal as refusal:
            task.changes = []
            task.failures.append("%s: %s" % (task.name, refusal.message))
        task.left = len(task.changes)

    def leave(self, task, layer, why):
        self.note(self.label(task, layer), why)

    def label(self, task, layer):
        """The layer, for the report."""
        if task.layers == 1 and task.output is not None:
            return task.name
        return "%s, layer '%s'" % (task.name, layer.get_name())

    def short_label(self, task, layer):
        """The layer, for the status bar, which has little room."""
        if task.layers == 1 and task.output is not None:
            return task.name
        if self.target == "layers":
            return "'%s'" % layer.get_name()
        return "%s '%s'" % (task.name, layer.get_name())

    # -- doing it -----------------------------------------------------------

    def run(self, tasks):
        """Do every task of `tasks`, an iterable that may load files as it goes."""
        client = server_job.connect(TITLE)
        self.words = server_job.JobWords(self.op, client.server_status, self.params)
        try:
            items = self.items(tasks)
            more = True
            while True:
                # What the server was too busy for goes again once it has nothing else of ours.
                while (more or self.refused) and \
                        len(self.running) < (1 if self.refused else IN_FLIGHT):
                    item = self.refused.popleft() if self.refused else next(items, None)
                    more = more and item is not None
                    if item is not None:
                        self.submit(client, *item)
                if not self.running:
                    break
                client.poll(0.1)
                for item in [item for item in self.running if item[-1].finished]:
                    self.running.remove(item)
                    self.collect(client, *item)
                self.progress()
        finally:
            client.close()
            for image in self.open_files:
                image.delete()
        Gimp.progress_update(1.0)

    def items(self, tasks):
        """(task, change, number) for every layer to process, in order."""
        number = 0
        for task in tasks:
            if task.output is not None:
                self.plan(task)
            if not task.changes:
                self.complete(task)
            for change in task.changes:
                number += 1
                yield task, change, task.number if task.output is not None else number

    def submit(self, client, task, change, number):
        if task.failures:       # the image stays as it was anyway
            self.settle(task)
            return
        try:
            job = client.submit(self.op, [change.read()], self.params)
        except SharpFuError as error:
            self.layer_failed(task, change, error.code, error.message)
        else:
            self.running.append((task, change, number, job))

    def collect(self, client, task, change, number, job):
        try:
            change.take(client.result(job).frame("image"))
        except SharpFuError as error:
            if error.code == "server_busy" and self.running:
                self.refused.append((task, change, number))
                return
            self.layer_failed(task, change, error.code, error.message)
        except Refusal as refusal:
            self.layer_failed(task, change, None, refusal.message)
        else:
            self.settle(task)

    def layer_failed(self, task, change, code, message):
        if code in FATAL:
            raise Stopped(message)
        task.failures.append("%s: %s" % (self.label(task, change.layer), message))
        task.failed.append(change)
        self.settle(task)

    def settle(self, task):
        """One more of task's layers has its answer, or failed."""
        task.left -= 1
        self.finished += self.share(task)
        if task.left == 0:
            self.complete(task)

    def complete(self, task):
        """Every answer is in: change the image, or export and close the file."""
        if not task.changes and task.output is not None:
            self.finished += 1
        if not task.image.is_valid():
            task.failures = ["%s: it was closed during the batch" % task.name]
        elif any(not change.layer.is_valid() for change in task.changes):
            task.failures.append("%s: some of its layers were deleted during the batch" %
                                 task.name)
        self.failures.extend(task.failures)
        if task.failures and task.output is None:
            # All or nothing: the layers that worked are not applied either.
            for change in task.changes:
                if change not in task.failed and change.layer.is_valid():
                    self.leave(task, change.layer,
                               "like the rest of the image, since part of it failed")
        if task.output is None:
            if task.changes and not task.failures:
                in_place.apply(task.image, task.changes, self.scale)
                self.done += len(task.changes)
            return
        try:
            if not task.changes and not task.failures:
                self.failures.append("%s: it has no layer SharpFu can work on" % task.name)
            elif not task.failures:
                in_place.apply(task.image, task.changes, self.scale)
                if export(task.image, task.output, task.name, self.failures):
                    self.done += 1
        finally:
            self.open_files.remove(task.image)
            task.image.delete()

    def share(self, task):
        """Progress units one of task's layers stands for: a file is one unit."""
        return 1.0 / len(task.changes) if task.output is not None else 1.0

    def progress(self):
        if not self.running:
            return
        fraction = self.finished + sum(self.share(task) * job.fraction
                                       for task, _, _, job in self.running)
        Gimp.progress_update(min(1.0, fraction / max(self.total, 1)))
        task, change, number, job = self.running[0]
        text = "%s %d/%d: %s: %s" % (TITLE, number, self.total,
                                     self.short_label(task, change.layer),
                                     self.words.text(job))
        if text != self.shown:
            self.shown = text
            Gimp.progress_set_text(text)


def walk(layers_of_image):
    """Every layer that holds pixels of its own, also inside groups, top to
    bottom, and whether its pixels are locked (by itself or by a group)."""
    return layers.walk(layers_of_image, lambda layer: layer.is_group(),
                       lambda layer: layer.get_children(),
                       lambda layer: layer.get_lock_content())


# -- the three targets -------------------------------------------------------

def run(op, scale, params, target, image, source, destination, adapt_steps=None, guard=None):
    """Run the batch; returns the Batch, which tells how it went. Raises
    Refusal when it cannot start, and Failed, with the summary, when any
    layer or file failed or the batch could not go on. adapt_steps: None,
    or adapt the model to the batch first (the upscaler, or the deblurrer for
    AI Deblur and AI Sharpen at 1x), with that many steps (0: the server's
    default). guard(size, name): refuses (Refusal) an image whose result
    (a ResultSize) is too large, or stops the batch (Declined)."""
    network = task_for(op, scale)     # which one adapts
    adapted = ""
    if target == "folder":
        names = folder_files(source, destination)
        batch = Batch(op, scale, params, target)
        batch.guard = guard
        batch.total = len(names)
        if adapt_steps is not None:
            frames, compressed = folder_samples(source, names, scale)
            batch.params, adapted = adapt(frames, compressed, params, adapt_steps, network)
        tasks = load(batch, source, destination, names)
    else:
        batch = Batch(op, scale, params, target)
        batch.guard = guard
        tasks = [Task("%s-%d" % (image.get_name(), image.get_id()), image, number)
                 for number, image in enumerate(open_images(target, image), 1)]
        for task in tasks:
            batch.plan(task)
        batch.total = sum(len(task.changes) for task in tasks)
        if not batch.total:
            raise Refusal("There is no layer SharpFu can work on: %s." % listing(
                [failure for task in tasks for failure in task.failures] + batch.notes))
        if adapt_steps is not None:
            chosen = spread([(task, change) for task in tasks for change in task.changes])
            frames = [change.read() for _, change in chosen]
            compressed = any(server_job.came_compressed(task.image, frame.format)
                             for (task, _), frame in zip(chosen, frames))
            batch.params, adapted = adapt(frames, compressed, params, adapt_steps, network)
    try:
        batch.run(tasks)
    except Stopped as stopped:
        raise batch.stopped(stopped.message)
    Gimp.progress_set_text("%s: %s%s" % (TITLE, batch.summary(), adapted))
    if batch.failures:
        raise Failed(batch.summary())
    return batch


def spread(items):
    """Up to ADAPT_IMAGES of `items`, evenly over them, as the CLI picks."""
    step = max(1.0, len(items) / float(server_job.ADAPT_IMAGES))
    return [items[int(k * step)] for k in range(min(server_job.ADAPT_IMAGES, len(items)))]


def adapt(frames, compressed, params, steps, network):
    """One adaptation for the whole batch: the params every job then uses,
    and a word on it for the status bar."""
    if not frames:
        raise Refusal("None of the batch's images could be read for adapting.")
    found, note = server_job.adapt(frames, params, TITLE, steps, compressed, network)
    return found, " (%s)" % note


def folder_samples(source, names, scale):
    """Pixels of the first usable layer of up to ADAPT_IMAGES of the folder's
    files, and whether any of them came from a lossy file."""
    frames, compressed = [], False
    for name in spread(names):
        try:
            image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, source.get_child(name))
        except GLib.Error:
            image = None
        if image is None:
            continue        # the batch itself reports it
        try:
            for layer, locked in walk(image.get_layers()):
                if locked or any(getattr(layer, method, None) and getattr(layer, method)()
                                 for method, _ in GENERATED):
                    continue
                try:
                    gimp_pixels.check_layer(image, layer, changes_layer=True)
                    frame = in_place.LayerChange(image, layer, scale).read()
                except Refusal:
                    continue
                frames.append(frame)
                compressed = compressed or (frame.format == "u8" and os.path.splitext(name)[
                    1].lower() in server_job.LOSSY_EXTENSIONS)
                break
        finally:
            image.delete()
    return frames, compressed


def open_images(target, image):
    if target == "layers":
        if image is None:
            raise Refusal("Open an image first: AI Batch on every layer works on the image it "
                          "is started from.")
        return [image]
    images = Gimp.get_images()
    if not images:
        raise Refusal("There is no open image.")
    return sorted(images, key=lambda image: image.get_id())     # in the order they were opened


def folder_files(source, destination):
    """The names of the files to process, once the folders are found fit."""
    if source is None or destination is None:
        raise Refusal("Choose an input folder and an output folder for AI Batch on a folder.")
    if source.query_file_type(Gio.FileQueryInfoFlags.NONE, None) != Gio.FileType.DIRECTORY:
        raise Refusal("The input folder %s does not exist." % source.get_parse_name())
    if source.equal(destination) or (source.get_path() and destination.get_path() and (
            os.path.realpath(source.get_path()) == os.path.realpath(destination.get_path()))):
        raise Refusal("The output folder is the input folder, so the results would replace the "
                      "originals. Choose another output folder.")
    try:
        destination.make_directory_with_parents(None)
    except GLib.Error as error:
        if destination.query_file_type(Gio.FileQueryInfoFlags.NONE, None) != \
                Gio.FileType.DIRECTORY:
            raise Refusal("The output folder %s cannot be made: %s" % (
                destination.get_parse_name(), error.message))
    children = source.enumerate_children("standard::name,standard::type,standard::is-hidden",
                                         Gio.FileQueryInfoFlags.NONE, None)
    names = sorted(info.get_name() for info in children
                   if info.get_file_type() == Gio.FileType.REGULAR and not info.get_is_hidden())
    children.close(None)
    if not names:
        raise Refusal("The input folder %s holds no files." % source.get_parse_name())
    return names


def load(batch, source, destination, names):
    """A task for each file, loaded only when the batch gets to it."""
    for number, name in enumerate(names, 1):
        try:
            image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, source.get_child(name))
        except GLib.Error:
            image = None
        if image is None:
            batch.failures.append("%s: GIMP cannot open it (%s)" % (
                name, Gimp.get_pdb().get_last_error()))
            batch.finished += 1
            continue
        batch.open_files.append(image)
        image.undo_disable()        # it is closed right after export
        yield Task(name, image, number, destination.get_child(name))


def export(image, output, name, failures):
    """Export to `output`, in the format its name says; False (and a failure
    noted) when GIMP cannot."""
    try:
        saved = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, output, None)
    except GLib.Error:
        saved = False
    if not saved:
        failures.append("%s: GIMP could not export it (%s)" % (
            name, Gimp.get_pdb().get_last_error()))
    return saved
