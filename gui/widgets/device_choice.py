"""The device choice: where a recipe trains — automatic, the CPU, one GPU, or several GPUs as a torchrun process group
(DistributedDataParallel, one process per GPU). It edits the recipe's `device` and `distributed.processes`.

A recipe whose pair is not among the machine's choices (several CPU processes, a GPU this machine lacks) is shown
as an extra entry, so the combo always says what the recipe asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QComboBox, QWidget


@dataclass(frozen=True)
class DeviceOption:
    device: str  # the recipe's `device`
    processes: int  # the recipe's `distributed.processes`
    text: str
    tip: str


def gpu_names() -> list[str]:
    """The CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies), by index."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def device_options(gpus: list[str]) -> list[DeviceOption]:
    options = [DeviceOption("auto", 1, "Automatic", "The first GPU if there is one (CUDA, then Apple's MPS), else "
                                                     "the CPU"),
               DeviceOption("cpu", 1, "CPU", "Train on the CPU")]
    for i, name in enumerate(gpus):
        options.append(DeviceOption(f"cuda:{i}", 1, f"GPU {i}: {name}", f"Train on GPU {i} ({name})"))
    for n in range(2, len(gpus) + 1):
        which = "All" if n == len(gpus) else "First"
        options.append(DeviceOption("cuda", n, f"{which} {n} GPUs (DistributedDataParallel)",
                                    f"GPUs 0–{n - 1}, one training process each (torchrun, NCCL). The batch size is "
                                    f"per GPU: a step trains on {n} × batch size images"))
    return options


def extra_option(device: str, processes: int) -> DeviceOption:
    """An entry for a recipe's choice the machine does not offer."""
    if processes > 1:
        where = "CPU" if device == "cpu" else "GPUs" if device in ("cuda", "auto") else device
        backend = "gloo" if device == "cpu" else "NCCL"
        return DeviceOption(device, processes, f"{where} × {processes} processes ({backend})",
                            f"The recipe asks for {processes} training processes (distributed.processes) on {device}")
    return DeviceOption(device, 1, f"{device} (not on this machine)",
                        f"The recipe asks for device '{device}', which this machine does not have")


class DeviceChoice(QComboBox):
    """A combo of DeviceOption; `choice_changed(device, processes)` when the user picks one."""

    choice_changed = Signal(str, int)

    def __init__(self, gpus: list[str] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("deviceCombo")
        self.setToolTip("Where the run trains: one device, or several GPUs as a torchrun process group")
        self._base: list[DeviceOption] = []  # what this machine offers
        self._options: list[DeviceOption] = []  # the entries shown: the base, and the recipe's own if it is not one
        self._quiet = False
        self.set_options(device_options(gpu_names() if gpus is None else gpus))
        self.activated.connect(self._on_activated)

    @property
    def options(self) -> list[DeviceOption]:
        return list(self._options)

    def set_options(self, options: list[DeviceOption]) -> None:
        self._base = list(options)
        self._fill(self._base)

    def _fill(self, options: list[DeviceOption]) -> None:
        self._quiet = True
        self.clear()
        self._options = list(options)
        for i, option in enumerate(self._options):
            self.addItem(option.text)
            self.setItemData(i, option.tip, Qt.ItemDataRole.ToolTipRole)
        self._quiet = False

    def show_choice(self, device: str, processes: int) -> None:
        """Select the entry for the recipe's pair (adding one when the machine does not offer it)."""
        index = next((i for i, o in enumerate(self._base) if (o.device, o.processes) == (device, processes)), -1)
        options = self._base if index >= 0 else [*self._base, extra_option(device, processes)]
        if options != self._options:
            self._fill(options)
        self._quiet = True
        self.setCurrentIndex(index if index >= 0 else len(options) - 1)
        self._quiet = False

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        if not self._quiet and 0 <= index < len(self._options):
            option = self._options[index]
            self.choice_changed.emit(option.device, option.processes)
