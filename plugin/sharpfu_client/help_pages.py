# -*- coding: utf-8 -*-
"""The help pages GIMP 3 shows from a SharpFu dialog's Help button, made
from the table of procedures (operations.PROCEDURES), so that they say what
the dialogs say.

install.py writes them into the plug-in's folder as a GIMP help domain:
help/en/gimp-help.xml maps each procedure's help id (its name) to its page;
the plug-in registers the folder (Gimp.PlugIn.add_help_domain).
Python 2.7 and 3, standard library only.
"""
from __future__ import absolute_import

from xml.sax.saxutils import escape, quoteattr

from .operations import PROCEDURES

DOMAIN = "sharpfu"          # the help domain's name
FOLDER = "help"             # in the plug-in's folder
LOCALE = "en"

STYLE = ("body{font-family:sans-serif;max-width:42em;margin:2em auto;line-height:1.45}"
         "dt{font-weight:bold;margin-top:.8em}h1{font-size:1.5em}")


def page_name(procedure):
    return "%s.html" % procedure.name


def words(text):
    return escape(text.replace(u"_", u""))


def page(procedure):
    """One procedure's help page, as HTML text."""
    title = procedure.title
    fields = []
    for argument in procedure.arguments:
        if not argument.in_dialog:
            continue
        entry = u"<dt>%s</dt><dd>%s" % (words(argument.label), escape(argument.help))
        if argument.choices:
            entry += u"<ul>%s</ul>" % u"".join(
                u"<li><b>%s</b>%s</li>" % (escape(choice.label), (u": " + escape(choice.help))
                                           if choice.help else u"")
                for choice in argument.choices)
        fields.append(entry + u"</dd>")
    others = u"".join(u'<li><a href="%s">%s</a></li>' % (page_name(other), escape(other.title))
                      for other in PROCEDURES.values() if other is not procedure)
    signature = u"".join(u"<li><code>%s</code>: %s</li>" % (escape(argument.name),
                                                         escape(argument.help))
                         for argument in procedure.arguments)
    menus = u", ".join(escape(menu.replace(u"<Image>/", u"").replace(u"/", u" \u2192 "))
                       for menu in procedure.menus)
    return (u"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            u"<title>%(title)s \u2014 SharpFu</title><style>%(style)s</style></head><body>\n"
            u"<h1>%(title)s</h1>\n<p><i>%(menus)s</i></p>\n<p>%(blurb)s.</p>\n<p>%(help)s</p>\n"
            u"<h2>Options</h2>\n<dl>%(fields)s</dl>\n"
            u"<h2>From scripts</h2>\n<p>The procedure <code>%(name)s</code> takes, after "
            u"<code>run-mode</code>%(first)s, these arguments, all optional:</p>"
            u"<ul>%(signature)s</ul>\n"
            u"<h2>If it does not work</h2>\n<p>Every problem is told in a message that says "
            u"what to do; the image is never left half-changed. When no SharpFu server "
            u"answers, the message gives the command that starts one and where its log is.</p>\n"
            u"<p>More in README.md, section \u201cIn GIMP\u201d, in the folder SharpFu was "
            u"installed from. Other SharpFu entries:</p><ul>%(others)s</ul>\n</body></html>\n") % {
        "title": escape(title), "style": STYLE, "menus": menus, "blurb": escape(procedure.blurb),
        "help": escape(procedure.help), "fields": u"".join(fields), "others": others,
        "name": escape(procedure.name), "signature": signature,
        "first": u", <code>image</code> and <code>drawables</code>" if procedure.image else u""}


def index():
    """gimp-help.xml: each procedure's help id to its page."""
    items = u"".join(u"  <help-item id=%s ref=%s/>\n" % (quoteattr(name), quoteattr(
        page_name(procedure))) for name, procedure in PROCEDURES.items())
    return (u"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gimp-help>\n%s</gimp-help>\n"
            % items)


def files():
    """{path inside the plug-in's folder: UTF-8 bytes} of the whole domain."""
    found = {"%s/%s/gimp-help.xml" % (FOLDER, LOCALE): index().encode("utf-8")}
    for procedure in PROCEDURES.values():
        found["%s/%s/%s" % (FOLDER, LOCALE, page_name(procedure))] = \
            page(procedure).encode("utf-8")
    return found


