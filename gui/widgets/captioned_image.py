"""An image that fits its space (aspect kept) with a caption under it: the side-by-side views of the Evaluate tab
(a suspect and examples of its classes, two near-duplicates, pretrained and fine-tuned filters or feature maps).

Filter grids and feature maps are a few pixels per weight: they are enlarged without smoothing (`pixelated`),
so every weight stays a sharp square; photos are smoothed."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

MIN_SIDE = 96


class CaptionedImage(QWidget):
    def __init__(self, object_name: str, tooltip: str, pixelated: bool = False, min_side: int = MIN_SIDE,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setToolTip(tooltip)
        self._image = QImage()
        self._pixelated = pixelated
        self.view = QLabel(objectName=f"{object_name}Image")
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(min_side, min_side)
        self.view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.caption = QLabel(objectName=f"{object_name}Caption")
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)

    def set_image(self, image: QImage | None, caption: str = "") -> None:
        """Show `image` (None or a null image: nothing, only the caption)."""
        self._image = QImage(image) if image is not None else QImage()
        self.caption.setText(caption)
        self._redraw()

    def image(self) -> QImage:
        """The image shown, at its own size (not the enlarged pixmap)."""
        return self._image

    def clear(self, caption: str = "") -> None:
        self.set_image(None, caption)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(220, 240)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._redraw()

    def _redraw(self) -> None:
        if self._image.isNull():
            self.view.clear()
            return
        size = self.view.size().expandedTo(QSize(MIN_SIDE, MIN_SIDE))
        mode = (Qt.TransformationMode.FastTransformation if self._pixelated
                else Qt.TransformationMode.SmoothTransformation)
        self.view.setPixmap(QPixmap.fromImage(self._image).scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode))
