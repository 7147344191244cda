"""Collapsed sections for a dock's rarely-changed settings (superqt's QCollapsible).

A dock shows what most runs change and keeps the rest one click away, so that it is
short by default.  The widgets of a collapsed section exist and work as any others:
code and tests read and set them without expanding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from magicgui.widgets import Container
from qtpy.QtWidgets import QFormLayout, QWidget
from superqt import QCollapsible

if TYPE_CHECKING:
    from magicgui.widgets.bases import Widget

__all__ = ["ADVANCED", "collapsed_form", "collapsed_magicgui"]

#: Title of the sections of rarely-changed settings.
ADVANCED = "Advanced"


def _collapsed(title: str, body: QWidget) -> QCollapsible:
    # Disclosure triangles: superqt's default points up when collapsed.
    section = QCollapsible(title, expandedIcon="▾", collapsedIcon="▸")
    # The section sits in a form or group that has margins of its own.
    section.layout().setContentsMargins(0, 0, 0, 0)
    section.addWidget(body)
    return section  # QCollapsible starts collapsed


def collapsed_form(title: str = ADVANCED) -> tuple[QCollapsible, QFormLayout]:
    """A collapsed section holding a form; add the section to a layout, rows to the form.

    Parameters
    ----------
    title : str
        Text of the section's toggle button.

    Returns
    -------
    section : superqt.QCollapsible
        The section (collapsed).
    form : QFormLayout
        The form inside it.
    """
    body = QWidget()
    form = QFormLayout(body)
    form.setContentsMargins(0, 0, 0, 0)
    return _collapsed(title, body), form


def collapsed_magicgui(
    container: Container, widgets: Sequence[Widget], index: int, title: str = ADVANCED
) -> tuple[QCollapsible, Container]:
    """Put magicgui ``widgets`` in a collapsed section at row ``index`` of ``container``.

    The widgets go into a labelled magicgui container of their own (so their labels and
    ``visible`` work as usual); the section is placed in ``container``'s Qt layout, so
    ``container`` does not list them: they must not need ``reset_choices`` (no layer
    combos).

    Parameters
    ----------
    container : magicgui.widgets.Container
        The dock, built without ``widgets``.
    widgets : sequence of magicgui widgets
        What the section holds, in order.
    index : int
        Row of ``container`` before which the section goes (negative: from the end).
    title : str
        As for :func:`collapsed_form`.

    Returns
    -------
    section : superqt.QCollapsible
        The collapsed section, already in ``container``.
    inner : magicgui.widgets.Container
        Its container: keep a reference, magicgui's label rows live as long as it does
        (a widget's ``visible`` hides its label through a weak reference to its row).
    """
    inner = Container(widgets=list(widgets), labels=True)
    inner.margins = (0, 0, 0, 0)
    layout = container.native.layout()
    if index < 0:
        index += layout.count()
    section = _collapsed(title, inner.native)
    layout.insertWidget(index, section)
    return section, inner
