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
  * a result over the limit (sharpfu_client.layers.ResultSize) is confirmed.
"""
import os

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GObject, Gimp, GimpUi, Gtk  # noqa: E402

from sharpfu_client import Client, methods  # noqa: E402
from sharpfu_client.layers import free_memory  # noqa: E402
from sharpfu_client.operations import OPERATIONS, filter_for  # noqa: E402

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
        self.config, self.spec = config, spec
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

    def chosen(self, combo):
        value = combo.get_active_id()
        if value is not None:
            self.config.set_property("method", value)


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
