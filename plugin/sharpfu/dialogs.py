"""The GIMP 3 dialogs, built from the table of procedures
(sharpfu_client.operations).

GimpProcedureDialog makes a field of each argument; on top of that:
  * the method is a dropdown of the methods the server has installed for
    the operation (and scale), "Best available" first, from its status
    (sharpfu_client.methods, cached briefly; a dialog never starts a server);
  * what cannot be chosen is greyed out: adaptation steps while adaptation
    is off, scales the chosen filter does not offer (AI Batch), outlines the
    layer lacks (AI Refine Matte), the folders unless the batch works on one;
  * the result's size in pixels and memory is shown as the scale changes;
  * a result over the limit (sharpfu_client.layers.ResultSize) is confirmed;
  * the filters' Preview button shows before and after for a crop of the
    layer (sharpfu_client.preview), computed by the filter's own job.
"""
import os
import threading
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GLib, GObject, Gimp, GimpUi, Gtk  # noqa: E402

import gimp_pixels  # noqa: E402
import in_place  # noqa: E402
from sharpfu_client import Client, SharpFuError, methods  # noqa: E402
from sharpfu_client.config import ConfigError  # noqa: E402
from sharpfu_client.layers import Refusal, free_memory  # noqa: E402
from sharpfu_client.operations import OPERATIONS, PREVIEW, filter_for  # noqa: E402
from sharpfu_client.plugin_jobs import (ELLIPSIS, STARTING_SERVER, job_params,  # noqa: E402
                                        method_words)
from sharpfu_client.preview import Crop  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def init():
    GimpUi.init("sharpfu")


def run(procedure, config, spec, image=None, drawables=(), size=None):
    """Show the dialog; True when the user pressed OK. size(config): the
    result's ResultSize for the current settings, or None."""
    init()
    window = build(procedure, config, spec, image, drawables, size)
    accepted = window.run()
    window.destroy()
    return accepted


def build(procedure, config, spec, image=None, drawables=(), size=None):
    """The dialog, filled and wired, not yet shown."""
    window = GimpUi.ProcedureDialog.new(procedure, config, spec.title)
    for argument in spec.arguments:
        if argument.kind == "choice":
            window.get_widget(argument.name, GimpUi.IntRadioFrame)
        elif argument.kind == "folder":
            window.get_widget(argument.name, GObject.TYPE_NONE)     # a folder chooser
        elif argument.kind == "percent":
            window.get_widget(argument.name, GimpUi.SpinScale)
    window.fill([argument.name for argument in spec.arguments if argument.in_dialog])
    for argument in spec.arguments:
        if argument.only_if:
            chooser, wanted = argument.only_if
            if wanted is True:
                window.set_sensitive(argument.name, True, config, chooser, False)
            else:
                values = Gimp.ValueArray.new(len(wanted))
                for value in wanted:
                    values.append(GObject.Value(GObject.TYPE_STRING, value))
                window.set_sensitive_if_in(argument.name, None, chooser, values, True)
    names = [argument.name for argument in spec.arguments]
    if "method" in names:
        window.sharpfu_methods = MethodField(window, config, spec)
    if spec.op is None and "scale" in names:
        follow_the_filter(window, config)
    if spec.op == "matte" and drawables:
        offer_sources(window, config, image, drawables[0])
    if spec.preview and drawables:
        window.sharpfu_preview = Preview(window, config, spec, image, drawables[0])
    if size is not None:
        window.sharpfu_size = SizeLabel(window, config, size)
    return window


def options(window, name):
    """The radio buttons of a choice's field, by their label."""
    found = {}

    def walk(widget):
        if isinstance(widget, Gtk.RadioButton):
            found[widget.get_label()] = widget
        elif isinstance(widget, Gtk.Container):
            for child in widget.get_children():
                walk(child)
    walk(window.get_widget(name, GimpUi.IntRadioFrame))
    return found


def set_choice_sensitive(window, config, name, allowed):
    """Grey out the choices of `name` not in `allowed` (nicks), in the
    choice itself (a value it refuses) and on its radio buttons; move the
    value to the first allowed one when it is greyed out."""
    choice = Gimp.param_spec_choice_get_choice(config.find_property(name))
    buttons = options(window, name)
    for nick in choice.list_nicks():
        choice.set_sensitive(nick, nick in allowed)
        button = buttons.get(choice.get_label(nick))
        if button is not None:
            button.set_sensitive(nick in allowed)
    if config.get_property(name) not in allowed and allowed:
        config.set_property(name, allowed[0])


def follow_the_filter(window, config):
    """AI Batch: only the scales the chosen filter offers (AI Upscale has no
    1x); AI Deblur's scale field is greyed out as a whole (the table's
    only_if)."""
    every = list(Gimp.param_spec_choice_get_choice(config.find_property("scale")).list_nicks())

    def update(*_):
        scales = filter_for(config.get_property("op")).scales
        set_choice_sensitive(window, config, "scale", list(scales) or every)
    config.connect("notify::op", update)
    update()


def offer_sources(window, config, image, layer):
    """AI Refine Matte: only the outlines the layer has."""
    if layer.is_layer_mask():
        layer = Gimp.Layer.from_mask(layer)
    has = {"mask": layer.get_mask() is not None,
           "selection": not Gimp.Selection.is_empty(image),
           "alpha": layer.has_alpha()}
    allowed = ["auto"] + [nick for nick in ("mask", "selection", "alpha") if has[nick]]
    set_choice_sensitive(window, config, "source", allowed)


class MethodField(object):
    """The method as a dropdown in place of the text field GimpProcedureDialog
    makes for it; the config's "method" follows the choice. `entries`:
    (value, label) as offered now."""

    def __init__(self, window, config, spec):
        self.window, self.config, self.spec = window, config, spec
        self.status = server_status()
        argument = spec.argument("method")
        entry = window.get_widget("method", GObject.TYPE_NONE)
        self.combo = Gtk.ComboBoxText()
        self.combo.set_tooltip_text(argument.help)
        label = Gtk.Label.new_with_mnemonic(argument.label)
        label.set_mnemonic_widget(self.combo)
        label.set_xalign(0.0)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        row.pack_start(label, False, False, 0)
        row.pack_start(self.combo, True, True, 0)
        parent = entry.get_parent()
        position = parent.child_get_property(entry, "position")
        parent.pack_start(row, False, False, 0)
        parent.reorder_child(row, position)
        entry.set_no_show_all(True)
        entry.hide()
        row.show_all()
        self.entries = []
        self.fill()
        self.combo.connect("changed", self.chosen)
        for name in ("op", "scale"):
            if name in [a.name for a in spec.arguments]:
                config.connect("notify::" + name, lambda *_: self.fill())

    def op_and_scale(self):
        op = self.spec.op or self.config.get_property("op")
        names = [a.name for a in self.spec.arguments]
        scaled = "scale" in names and "scale" in OPERATIONS[op].params
        return op, int(self.config.get_property("scale")) if scaled else 1

    def fill(self):
        op, scale = self.op_and_scale()
        current = self.config.get_property("method") or methods.BEST
        self.entries = methods.choices(self.status, op, scale)
        if current not in [value for value, _ in self.entries]:
            # named by a script or an earlier run: kept, so that OK keeps it
            self.entries.append((current, u"%s (not offered by the server now)" % current))
        self.combo.remove_all()
        for value, text in self.entries:
            self.combo.append(value, text)
        self.combo.set_active_id(current)
        self.follow_blur()

    def chosen(self, combo):
        value = combo.get_active_id()
        if value is not None:
            self.config.set_property("method", value)
        self.follow_blur()

    def follow_blur(self):
        """Blur size and Show estimated blur mean something only to a
        deblurrer that estimates the blur: greyed out for the others (left
        as they are when the server cannot tell)."""
        fields = [a.name for a in self.spec.arguments if a.name in ("blur-size", "show-blur")]
        if not fields:
            return
        op, scale = self.op_and_scale()
        able = methods.estimates_blur(self.status, op, scale, self.config.get_property("method"))
        for name in fields:
            self.window.get_widget(name, GObject.TYPE_NONE).set_sensitive(able is not False)


def server_status():
    """The status of the server the jobs will go to, for the method list:
    briefly cached, never by starting a server (None when none answers)."""
    try:
        client = Client(beside=HERE, autostart=False, connect_timeout=methods.ASK_TIMEOUT)
    except Exception:   # noqa: BLE001 - a bad configuration: the job will say so
        return None

    def ask():
        try:
            return client.connect()
        except Exception:   # noqa: BLE001 - no server: the list keeps "Best available"
            return None
    try:
        return methods.cached_status(client.endpoint, ask)
    finally:
        client.close()


class SizeLabel(object):
    """A line under the fields: the result's size in pixels and memory, and
    whether it will be asked about."""

    def __init__(self, window, config, size):
        self.config, self.size = config, size
        self.label = Gtk.Label()
        self.label.set_xalign(0.0)
        self.label.set_line_wrap(True)
        window.get_content_area().pack_end(self.label, False, False, 6)
        self.label.show()
        for name in ("scale", "output", "op", "target"):
            if config.find_property(name) is not None:
                config.connect("notify::" + name, lambda *_: self.update())
        self.update()

    def update(self):
        size = self.size(self.config)
        if size is None:
            self.label.set_text("")
            return
        text = u"Size of the result: %s" % size.words()
        if size.too_large(free_memory()):
            text += u". That is very large: you will be asked to confirm."
        self.label.set_text(text)


class Preview(object):
    """Before and after for a crop of the layer around the selection (else
    the image's centre), computed when the Preview button is pressed, with
    the dialog's method, scale and strength, by the filter's own job. The
    job runs in a thread, so that the dialog stays responsive, and its
    answer comes back through GLib.idle_add; changing the settings makes a
    preview stale. `busy` while a job for the current settings runs;
    `crop` (a sharpfu_client.preview.Crop), `before` and `after` (Frames in
    the image's precision): what is shown; above 1x, before is the crop
    plainly enlarged, as strength 0 would leave it."""

    def __init__(self, window, config, spec, image, layer):
        self.config, self.spec, self.image, self.layer = config, spec, image, layer
        self.crop = self.before = self.after = None
        self.busy = False
        self.asked = 0      # presses and changes so far: the answer to an older one is dropped
        self.button = Gtk.Button.new_with_mnemonic(PREVIEW[0])
        self.button.set_tooltip_text(PREVIEW[1])
        self.button.connect("clicked", lambda *_: self.compute())
        self.status = Gtk.Label()
        self.status.set_xalign(0.0)
        self.status.set_line_wrap(True)
        self.status.set_max_width_chars(60)
        top = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
        top.pack_start(self.button, False, False, 0)
        top.pack_start(self.status, True, True, 0)
        self.images, self.captions = [], []
        self.row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        for _ in range(2):
            column = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=3)
            self.captions.append(Gtk.Label())
            self.images.append(Gtk.Image())
            column.pack_start(self.captions[-1], False, False, 0)
            column.pack_start(self.images[-1], False, False, 0)
            self.row.pack_start(column, True, True, 0)
        self.row.set_no_show_all(True)      # until there is something to show
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        box.pack_start(top, False, False, 0)
        box.pack_start(self.row, False, False, 0)
        window.get_content_area().pack_end(box, False, False, 6)
        box.show_all()
        for name in ("method", "scale", "strength"):
            if config.find_property(name) is not None:
                config.connect("notify::" + name, lambda *_: self.stale())
        window.connect("destroy", lambda *_: self.drop())

    def say(self, text):
        self.status.set_text(text)

    def drop(self):
        """A job under way stops, its answer unwanted."""
        self.asked += 1
        self.busy = False

    def stale(self):
        self.drop()
        if self.status.get_text():
            self.row.set_sensitive(False)
            self.say(u"The settings changed: press Preview to see them.")

    def compute(self):
        self.asked += 1
        self.busy = True
        scale = int(self.config.get_property("scale")) if self.spec.scales else 1
        try:
            # What the filter sends starts at change.source: the crop keeps its alignment
            change = in_place.LayerChange(self.image, self.layer, scale)
            crop = Crop(self.layer.get_width(), self.layer.get_height(), scale,
                        centre(self.image, self.layer), (change.source.x, change.source.y))
            frame = gimp_pixels.read(self.layer, crop.source,
                                     gimp_pixels.sample_format(self.image))
        except Refusal as refusal:
            self.busy = False
            self.say(refusal.message)
            return
        config = self.config
        params = job_params(scale if self.spec.scales else None, config.get_property("method"),
                            config.get_property("strength"))
        self.say(u"Computing the preview" + ELLIPSIS)
        worker = threading.Thread(target=self.work, args=(self.asked, crop, frame, params))
        worker.daemon = True
        worker.start()

    def work(self, asked, crop, frame, params):
        """In the thread: the jobs, and nothing of GIMP or GTK but idle_add."""
        def cancelled():
            return asked != self.asked

        def tell(text):
            GLib.idle_add(self.told, asked, text)

        def progress(fraction, stage):
            tell(u"Computing the preview%s %d %%" % (ELLIPSIS, round(100 * fraction)))
        try:
            client = Client(beside=HERE)
            try:
                client.connect(on_start=lambda endpoint: tell(STARTING_SERVER))
                before = frame
                if crop.scale > 1:
                    before = client.run(self.spec.op, [frame], dict(params, strength=0.0),
                                        cancelled=cancelled).frame("image")
                result = client.run(self.spec.op, [frame], params, progress, cancelled)
            finally:
                client.close()
            answer = (crop, crop.shown(before), crop.shown(result.frame("image")),
                      method_words(result.method))
        except SharpFuError as error:
            answer = error.message
        except ConfigError as error:
            answer = str(error)
        except Exception as error:      # noqa: BLE001 - a bug: said, not left unanswered
            traceback.print_exc()
            answer = u"The preview failed unexpectedly (%s: %s)." % (type(error).__name__, error)
        GLib.idle_add(self.show, asked, answer)

    def told(self, asked, text):
        if asked == self.asked:
            self.say(text)
        return False

    def show(self, asked, answer):
        if asked != self.asked:
            return False
        self.busy = False
        if not isinstance(answer, tuple):
            self.say(answer)
            return False
        self.crop, self.before, self.after, words = answer
        crop = self.crop
        for image, frame in zip(self.images, (self.before, self.after)):
            image.set_from_pixbuf(gimp_pixels.pixbuf(self.layer, frame))
        self.captions[0].set_text(u"Before, plainly enlarged" if crop.scale > 1 else u"Before")
        self.captions[1].set_text(u"After")
        self.row.set_sensitive(True)
        self.row.set_no_show_all(False)
        self.row.show_all()
        text = u"%d \u00d7 %d pixels of the layer, by %s" % (
            crop.target.width, crop.target.height, words)
        strength = self.config.get_property("strength")
        text += u" at %d %% strength." % round(strength) if strength < 100 else u"."
        if self.config.get_property("adapt"):
            text += u" Without adapting first, which OK does."
        self.say(text)
        return False


def centre(image, layer):
    """Where the preview looks, in layer coordinates: the selection's centre
    (its part on the layer), else the image's."""
    if not Gimp.Selection.is_empty(image):
        found, x, y, width, height = layer.mask_intersect()
        if found:
            return x + width / 2.0, y + height / 2.0
    _, x, y = layer.get_offsets()
    return image.get_width() / 2.0 - x, image.get_height() / 2.0 - y


def confirm(title, question):
    """Ask before something big: True to go on."""
    init()
    box = Gtk.MessageDialog(message_type=Gtk.MessageType.WARNING,
                            buttons=Gtk.ButtonsType.NONE, text=title)
    box.format_secondary_text(question)
    box.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    box.add_button("_Go on", Gtk.ResponseType.OK)
    box.set_default_response(Gtk.ResponseType.CANCEL)
    answer = box.run()
    box.destroy()
    return answer == Gtk.ResponseType.OK
