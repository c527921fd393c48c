"""The run log follows new lines unless the user scrolled up to read, and follows again once they scroll back to
the end — also after being hidden (another tab) or resized."""

from __future__ import annotations

from PySide6.QtWidgets import QTabWidget, QWidget

from gui.widgets.log_view import FollowingLog


def add(log: FollowingLog, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        log.appendPlainText(f"line {i}")


def at_end(log: FollowingLog) -> bool:
    bar = log.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() == bar.maximum()


def test_the_log_follows_stops_when_scrolled_up_and_follows_again_at_the_end(qtbot):
    log = FollowingLog()
    qtbot.addWidget(log)
    log.resize(300, 120)
    log.show()
    add(log, 100)
    assert at_end(log) and log.following

    bar = log.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)  # the user scrolls up to read
    add(log, 50, 100)
    assert not log.following
    reading = bar.value()
    add(log, 5, 150)
    assert bar.value() == reading  # the line being read stays put

    bar.setValue(bar.maximum())  # back at the end: following again
    add(log, 5, 155)
    assert log.following and at_end(log)


def test_lines_added_while_on_another_tab_do_not_stop_the_following(qtbot):
    """QPlainTextEdit's own rule ("follow if the last line is in view") breaks here: appended while hidden, the
    log comes back one line short of the end and never follows again."""
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    log = FollowingLog()
    tabs.addTab(QWidget(), "other")
    tabs.addTab(log, "log")
    tabs.resize(300, 160)
    tabs.show()
    tabs.setCurrentWidget(log)
    add(log, 40)
    assert at_end(log)

    tabs.setCurrentIndex(0)  # the user looks at another tab while the run goes on
    add(log, 160, 40)
    tabs.setCurrentWidget(log)
    add(log, 10, 200)

    assert log.following and at_end(log)
    tabs.resize(320, 240)  # a resize changes the scroll range: the end stays in view
    assert at_end(log)
